"""Find-or-create without duplicates: rank existing billing customers that may already be a CRM
account, so a person can pick one (pure, deterministic, no I/O).

Quote-to-cash links a won deal's account to a billing customer in this order: an existing link
(either side), then a unique key (exactly one customer with the contact's email), then the fuzzy
candidates ranked here, for a person to choose from — never an automatic merge on a fuzzy match.

Scores are in [0, 1]: company names are compared after normalising case, punctuation and legal
suffixes ("Globex Corp." ≈ "globex corporation"); an email domain that names the company, or a
candidate with the same (non-free-mail) email domain, counts as well.
"""

from __future__ import annotations

import re
import unicodedata
from difflib import SequenceMatcher

from domain.models import BillingCustomer
from domain.quote import CustomerCandidate

#: below this a candidate is not worth a person's time
THRESHOLD = 0.6

_LEGAL = {
    "ag", "bv", "co", "company", "corp", "corporation", "gmbh", "inc", "incorporated", "limited",
    "llc", "llp", "ltd", "nv", "oy", "plc", "pty", "sa", "sarl", "sas", "spa", "the",
}  # fmt: skip
_FREE_MAIL = {
    "aol.com", "gmail.com", "googlemail.com", "hotmail.com", "icloud.com", "live.com",
    "outlook.com", "proton.me", "protonmail.com", "yahoo.com",
}  # fmt: skip
_NON_WORD = re.compile(r"[^a-z0-9]+")


def company_tokens(name: str | None) -> list[str]:
    """Lower-case words of a company name without accents, punctuation or legal suffixes."""
    if not name:
        return []
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = text.replace("&", " and ")
    return [t for t in _NON_WORD.split(text) if t and t not in _LEGAL]


def company_domain(email: str | None) -> str | None:
    """The email's domain when it names an organisation (not a free-mail provider)."""
    domain = email_domain(email)
    return domain if domain and domain not in _FREE_MAIL else None


def email_domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1].strip().lower() or None


def name_similarity(a: str | None, b: str | None) -> float:
    """1.0 for the same normalised name; one name's words all within the other's ≥ 0.85;
    otherwise the character similarity of the normalised names."""
    ta, tb = company_tokens(a), company_tokens(b)
    if not ta or not tb:
        return 0.0
    if ta == tb:
        return 1.0
    ratio = SequenceMatcher(None, " ".join(ta), " ".join(tb)).ratio()
    if set(ta) <= set(tb) or set(tb) <= set(ta):
        ratio = max(ratio, 0.85)
    return round(ratio, 3)


def _domain_names_company(domain: str, company: str | None) -> bool:
    """ "northwind-analytics.com" names "Northwind Analytics"; so does "northwind.io"."""
    label = _NON_WORD.sub("", domain.split(".")[0])
    tokens = company_tokens(company)
    return bool(label) and bool(tokens) and (label == "".join(tokens) or label == tokens[0])


def rank_candidates(
    company: str,
    email: str | None,
    customers: list[BillingCustomer],
    *,
    exact_email_ids: frozenset[str] = frozenset(),
    threshold: float = THRESHOLD,
) -> list[CustomerCandidate]:
    """The customers worth offering, best first (ties by ID, so the order is stable).

    ``exact_email_ids``: customers the platform found by the contact's exact email (a unique
    key; they score 1.0). A candidate's own email, when its metadata carries one, is compared by
    domain. Customer-controlled names are data here, never instructions.
    """
    domain = email_domain(email)
    company_domain = domain if domain and domain not in _FREE_MAIL else None
    ranked: dict[str, CustomerCandidate] = {}
    for customer in customers:
        reasons: list[str] = []
        score = name_similarity(company, customer.company)
        if score >= 1.0:
            reasons.append("same company name")
        elif score >= threshold:
            reasons.append(f"similar company name ({score:.2f})")
        if customer.id in exact_email_ids:
            score = 1.0
            reasons.insert(0, "same contact email")
        elif company_domain:
            theirs = email_domain(customer.metadata.get("email"))
            if theirs == company_domain:
                score = max(score, 0.9)
                reasons.append("same email domain")
            elif _domain_names_company(company_domain, customer.company):
                score = max(score, 0.8)
                reasons.append("email domain names the company")
        if score < threshold or customer.id in ranked:
            continue
        ranked[customer.id] = CustomerCandidate(
            customer_id=customer.id, score=round(score, 3), reasons=reasons
        )
    return sorted(ranked.values(), key=lambda c: (-c.score, c.customer_id))

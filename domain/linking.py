"""Linking the book a deployment already has (issue 19's backfill): which billing customer is
which CRM account, decided in this order and never guessed:

1. **An external ID** either side already holds (the CRM account's billing customer field, or
   the billing customer's CRM link): certain.
2. **The same email**: the billing customer's email is a contact on exactly one CRM account.
3. **The same company domain** (not a free-mail one) on exactly one account: nearly certain.
4. **A similar company name**, scored with ``domain.matching.name_similarity``: linked only when
   the best candidate is both above ``auto`` and clearly ahead of the second; otherwise, when
   worth a look (above ``review``), the pair goes to the review queue with its candidates.

Each CRM account is linked at most once (first by the stronger rule). Fuzzy candidates come from
a token index (blocking on company-name words), so 10,000 customers on each side cost
comparisons per shared word, not 10,000²; the most common words (shared by more than
``block_limit`` accounts, e.g. "global", "tech") do not propose candidates on their own.
Pure and deterministic: the same book links the same way.
"""

from __future__ import annotations

from collections import defaultdict

from domain.matching import company_domain, company_tokens, name_similarity
from domain.models import Frozen


class BillingParty(Frozen):
    id: str
    company: str | None = None
    email: str | None = None  # PII: compared, never logged
    crm_account_id: str | None = None


class CrmParty(Frozen):
    id: str
    name: str | None = None
    domain: str | None = None
    emails: list[str] = []
    billing_customer_id: str | None = None


class Link(Frozen):
    customer_id: str
    account_id: str
    method: str  # external_id | email | domain | name
    confidence: float


class Candidate(Frozen):
    account_id: str
    score: float


class Review(Frozen):
    customer_id: str
    candidates: list[Candidate]
    reason: str


class LinkPlan(Frozen):
    links: list[Link] = []
    review: list[Review] = []
    unmatched_customers: list[str] = []
    unmatched_accounts: list[str] = []

    def counts(self) -> dict[str, int]:
        by: dict[str, int] = defaultdict(int)
        for link in self.links:
            by[link.method] += 1
        return {
            **dict(sorted(by.items())),
            "review": len(self.review),
            "unmatched_customers": len(self.unmatched_customers),
            "unmatched_accounts": len(self.unmatched_accounts),
        }


def plan_links(
    customers: list[BillingParty],
    accounts: list[CrmParty],
    *,
    auto: float = 0.92,
    review: float = 0.6,
    margin: float = 0.08,
    block_limit: int = 50,
) -> LinkPlan:
    """The links to write, the pairs for a person, and what matched nothing."""
    by_id = {a.id: a for a in accounts}
    taken: set[str] = set()
    done: set[str] = set()
    links: list[Link] = []

    def link(customer: BillingParty, account_id: str, method: str, confidence: float) -> None:
        links.append(
            Link(
                customer_id=customer.id, account_id=account_id, method=method, confidence=confidence
            )
        )
        taken.add(account_id)
        done.add(customer.id)

    # 1. external IDs, either side
    by_billing_id = {a.billing_customer_id: a.id for a in accounts if a.billing_customer_id}
    for c in customers:
        account_id = c.crm_account_id if c.crm_account_id in by_id else by_billing_id.get(c.id)
        if account_id and account_id not in taken:
            link(c, account_id, "external_id", 1.0)

    # 2. exact email on exactly one account; 3. company domain on exactly one account
    by_email: dict[str, set[str]] = defaultdict(set)
    by_domain: dict[str, set[str]] = defaultdict(set)
    for a in accounts:
        for e in a.emails:
            by_email[e.strip().lower()].add(a.id)
            if d := company_domain(e):
                by_domain[d].add(a.id)
        if a.domain:
            by_domain[a.domain.strip().lower().removeprefix("www.")].add(a.id)
    for method, index, key, confidence in (
        ("email", by_email, lambda c: (c.email or "").strip().lower() or None, 1.0),
        ("domain", by_domain, lambda c: company_domain(c.email), 0.95),
    ):
        for c in customers:
            if c.id in done or not (k := key(c)):
                continue
            free = index.get(k, set()) - taken
            if len(free) == 1:
                link(c, next(iter(free)), method, confidence)

    # 4. similar names, from a token index. A word is "common" by the whole book, not by what
    # is still free: otherwise a backfill resumed after half its links were written would find
    # the other half's common words rare again, and the same book would link differently.
    index: dict[str, list[str]] = defaultdict(list)
    book_count: dict[str, int] = defaultdict(int)
    for a in accounts:
        for t in set(company_tokens(a.name)):
            book_count[t] += 1
            if a.id not in taken:
                index[t].append(a.id)
    reviews: list[Review] = []
    for c in sorted(customers, key=lambda c: c.id):
        if c.id in done:
            continue
        pool = {
            account_id
            for t in set(company_tokens(c.company))
            if book_count.get(t, 0) <= block_limit
            for account_id in index.get(t, ())
            if account_id not in taken
        }
        scored = sorted(
            (
                Candidate(account_id=i, score=name_similarity(c.company, by_id[i].name))
                for i in pool
            ),
            key=lambda x: (-x.score, x.account_id),
        )
        scored = [s for s in scored if s.score >= review]
        if not scored:
            continue
        best, second = scored[0], (scored[1].score if len(scored) > 1 else 0.0)
        if best.score >= auto and best.score - second >= margin:
            link(c, best.account_id, "name", best.score)
            continue
        why = "similar names, none certain" if best.score < auto else "several accounts alike"
        reviews.append(Review(customer_id=c.id, candidates=scored[:5], reason=why))
        done.add(c.id)
    # a review candidate may have been linked to a later customer: keep what is still free
    reviews = [
        r.model_copy(update={"candidates": [x for x in r.candidates if x.account_id not in taken]})
        for r in reviews
    ]
    reviews = [r for r in reviews if r.candidates]
    in_review = {r.customer_id for r in reviews} | {
        x.account_id for r in reviews for x in r.candidates
    }
    linked_customers = {link_.customer_id for link_ in links}
    return LinkPlan(
        links=sorted(links, key=lambda x: x.customer_id),
        review=reviews,
        unmatched_customers=sorted(
            c.id for c in customers if c.id not in linked_customers and c.id not in in_review
        ),
        unmatched_accounts=sorted(
            a.id for a in accounts if a.id not in taken and a.id not in in_review
        ),
    )

"""Containment for text a model drafts for a customer or a record (issue 22): checked against the
facts it was given, never trusted.

A drafted collection email, CSM outreach or support note may only state what RevBridge knows and
policy has allowed. :func:`check_draft` returns every reason a draft must be discarded (the
caller then sends the reviewed template and audits the refusal with these reasons):

- every **amount**, **date**, **invoice number** and **percentage** in the text equals one of the
  facts (a model that rounds, invents or shifts a figure is caught, not believed);
- **no offer** (discount, credit, refund, waiver, free period, a deadline) unless policy approved
  one for this draft;
- **links** only from the allow-list (the billing platform's hosted payment page);
- **no contact data** (email addresses, phone numbers) but the facts' own — PII redacted from the
  prompt must not come back, and no other customer's;
- **no other customer**: a company name (``Acme Corp``, ``Globex GmbH``) or a billing customer ID
  that is not this customer's own, and none of the names the caller knows belong to others;
- **no instruction followed**: text addressed to a model or an operator (the injection patterns
  of ``domain.containment``: "ignore previous instructions", role markers, "pre-approved"),
  markup, and no run of customer-written text repeated verbatim (what a model echoes from a
  fenced case is data, never the customer's words in our voice);
- **length** and **script** limits (a draft in an unexpected alphabet is not reviewed text), and
  for a one-line text (the account health line) no line break;
- where the caller lists them (``numbers``), **every number** in the text is one of the facts'
  (a health line has no figure of its own: a tenure or count the model made up is caught).
Pure: no I/O, deterministic.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from domain.containment import INSTRUCTION_PLACEHOLDER, neutralize_llm_text
from domain.models import Frozen


class DraftCode(StrEnum):
    AMOUNT = "amount_not_in_facts"
    DATE = "date_not_in_facts"
    INVOICE = "invoice_not_in_facts"
    PERCENT = "percent_not_approved"
    OFFER = "offer_not_approved"
    LINK = "link_not_allowed"
    CONTACT = "contact_not_in_facts"
    LENGTH = "too_long"
    SCRIPT = "unexpected_script"
    EMPTY = "empty"
    NUMBER = "number_not_in_facts"
    OTHER_CUSTOMER = "other_customer"
    INSTRUCTION = "instruction_followed"
    MARKUP = "markup"
    ECHO = "customer_text_repeated"


class DraftFacts(Frozen):
    """What the draft may say. Amounts in minor units of ``currency``."""

    currency: str = "USD"
    amounts: list[int] = []
    dates: list[date] = []
    invoice_numbers: list[str] = []
    #: percentages policy approved for this draft (an approved 10 % courtesy credit)
    percents: list[float] = []
    #: offers policy approved (e.g. ["credit"]); empty: the draft may offer nothing
    offers: list[str] = []
    #: URL prefixes a link may start with (the hosted payment page)
    links: list[str] = []
    #: contact data the draft may repeat (the customer's own billing email)
    contacts: list[str] = []
    max_chars: int = 2_000
    #: Unicode scripts letters may come from (by the first word of their Unicode name)
    scripts: list[str] = ["LATIN"]
    #: this customer's own names (billing company, CRM account): the only company names allowed
    names: list[str] = []
    #: this customer's own billing ID(s): any other ``cus_``/``cust_`` ID is another customer's
    customer_ids: list[str] = []
    #: names the caller knows belong to OTHER customers (never in this draft)
    foreign_names: list[str] = []
    #: customer-written text given to the model as fenced data: never repeated verbatim
    untrusted: list[str] = []
    #: when set, every number in the text (amounts, counts, percentages alike) must be one of these
    numbers: list[float] | None = None
    #: the text must be one line (no line break)
    one_line: bool = False


class DraftRefusal(Frozen):
    code: DraftCode
    detail: str

    def line(self) -> str:
        return f"{self.code.value}: {self.detail}"


_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_CODES = "USD|EUR|GBP|JPY|CAD|AUD|CHF"
_NUM = r"\d{1,3}(?:[,\u00a0 ]\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_AMOUNT = re.compile(
    rf"(?P<sym>[$€£¥])\s?(?P<a>{_NUM})|(?P<b>{_NUM})\s?(?P<code>{_CODES})\b|"
    rf"\b(?P<code2>{_CODES})\s?(?P<c>{_NUM})"
)
_PERCENT = re.compile(r"(?P<p>\d+(?:\.\d+)?)\s?(?:%|percent\b|per cent\b)", re.IGNORECASE)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_WORD_DATE = re.compile(
    rf"\b(?:(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<m1>{_MONTHS})\.?,?\s+(?P<y1>\d{{4}})|"
    rf"(?P<m2>{_MONTHS})\.?\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y2>\d{{4}}))\b",
    re.IGNORECASE,
)
_NUMERIC_DATE = re.compile(r"\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b")
_INVOICE = re.compile(
    r"\b(?:invoice|inv)\s*(?:no\.?|number|#)?\s*[:#]?\s*(?P<n>[A-Za-z0-9][A-Za-z0-9_-]{2,})",
    re.IGNORECASE,
)
_INVOICE_ID = re.compile(r"\b(?:in_[A-Za-z0-9]{6,}|INV-?\d{3,})\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\")\]]+", re.IGNORECASE)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
#: not inside an ID ("INV-1042 (125.00 USD)" is an invoice and an amount, not a phone number)
_PHONE = re.compile(r"(?<![\w.-])\+?\d[\d ().-]{7,}\d(?![\w.])")
_OFFERS = {
    "discount": re.compile(r"\b(discount\w*|\d+\s?% off|coupon|promo)\b", re.IGNORECASE),
    "credit": re.compile(
        r"\b(credit(?:ed|s)? (?:to|on|of|back)|courtesy credit|account credit)\b", re.IGNORECASE
    ),  # fmt: skip
    "refund": re.compile(r"\brefund\w*\b", re.IGNORECASE),
    "waiver": re.compile(r"\b(waiv\w+|forgiv\w+|write[- ]off|written off)\b", re.IGNORECASE),
    "free": re.compile(
        r"\b(free (?:month|period|trial|of charge)|no charge|complimentary)\b", re.IGNORECASE
    ),  # fmt: skip
    "deadline": re.compile(
        r"\b(deadline|final notice|within \d+ (?:hours|days)|or (?:we|your account) will)\b",
        re.IGNORECASE,
    ),  # fmt: skip
}


#: the same offers in the other languages drafts may be written in (fr, de, es): a model asked
#: to write French promises "une remise", not "a discount"
_OFFERS_OTHER = {
    "discount": re.compile(
        r"\b(remise\w*|réduction\w*|rabais|code promo|rabatt\w*|preisnachlass\w*|gutschein\w*|"
        r"descuento\w*|rebaja\w*|cup[oó]n\w*)\b",
        re.IGNORECASE,
    ),
    "credit": re.compile(
        r"\b(geste commercial|crédit (?:de courtoisie|sur votre compte|commercial)|"
        r"gutschrift\w*|kulanz\w*|crédito (?:a|en) su cuenta|crédito de cortesía)\b",
        re.IGNORECASE,
    ),
    "refund": re.compile(
        r"\b(rembours\w*|rückerstatt\w*|zurückerstatt\w*|erstatten|reembols\w*|devoluci[oó]n)\b",
        re.IGNORECASE,
    ),
    "waiver": re.compile(
        r"\b(renon[cç]\w*|annul\w* (?:la|votre) facture|passée? en perte|erlass\w*|verzicht\w*|"
        r"condon\w*|anula\w* (?:la|su) factura)\b",
        re.IGNORECASE,
    ),
    "free": re.compile(
        r"\b(gratuit\w*|offert\w*|sans frais|kostenlos\w*|gratis|umsonst|kostenfrei\w*|"
        r"sin (?:coste|costo|cargo))\b",
        re.IGNORECASE,
    ),
    "deadline": re.compile(
        r"\b(date limite|dernier délai|mise en demeure|(?:sous|dans les) \d+ jours|frist\w*|"
        r"(?:innerhalb von|binnen) \d+ tagen|letzte mahnung|plazo\w*|fecha límite|"
        r"dentro de \d+ días|último aviso)",
        re.IGNORECASE,
    ),
}
#: month names of the other languages, for dates written out ("1er janvier 2027", "1. Januar
#: 2027", "1 de enero de 2027")
_MONTHS_OTHER = {
    name: i + 1
    for names in (
        "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
        "januar februar märz april mai juni juli august september oktober november dezember",
        "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    )
    for i, name in enumerate(names.split())
}
_WORD_DATE_OTHER = re.compile(
    rf"\b(?P<d>\d{{1,2}})(?:er|\.|º)?\s+(?:de\s+)?(?P<m>{'|'.join(sorted(_MONTHS_OTHER, key=len, reverse=True))})"
    r"\s+(?:de\s+)?(?P<y>\d{4})\b",
    re.IGNORECASE,
)


def _minor(number: str) -> int:
    clean = re.sub(r"[,\u00a0 ]", "", number)
    whole, _, frac = clean.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def _month(name: str) -> int:
    key = name.lower()[:3]
    return [m[:3] for m in _MONTHS.split("|")[:12]].index(key) + 1


def _dates(text: str) -> tuple[list[date], list[str]]:
    found: list[date] = []
    bad: list[str] = []
    for m in _ISO_DATE.finditer(text):
        try:
            found.append(date(int(m[1]), int(m[2]), int(m[3])))
        except ValueError:
            bad.append(m[0])
    for m in _WORD_DATE.finditer(text):
        d, mon, y = (m["d1"], m["m1"], m["y1"]) if m["d1"] else (m["d2"], m["m2"], m["y2"])
        try:
            found.append(date(int(y), _month(mon), int(d)))
        except ValueError:
            bad.append(m[0])
    for m in _WORD_DATE_OTHER.finditer(text):
        try:
            found.append(date(int(m["y"]), _MONTHS_OTHER[m["m"].lower()], int(m["d"])))
        except ValueError:
            bad.append(m[0])
    # 03/04/2026 is March or April depending on the reader: never in a customer's text
    bad += [m[0] for m in _NUMERIC_DATE.finditer(text)]
    return found, bad


def _scripts(text: str) -> set[str]:
    out = set()
    for ch in text:
        if ch.isalpha():
            out.add(unicodedata.name(ch, "UNKNOWN").split(" ")[0])
    return out


def check_draft(text: str, facts: DraftFacts) -> list[DraftRefusal]:
    """Every reason to discard ``text`` (empty: it may go to review or out)."""
    refusals: list[DraftRefusal] = []

    def refuse(code: DraftCode, detail: Any) -> None:
        refusals.append(DraftRefusal(code=code, detail=str(detail)[:120]))

    if not text.strip():
        return [DraftRefusal(code=DraftCode.EMPTY, detail="the draft is empty")]
    if len(text) > facts.max_chars:
        refuse(DraftCode.LENGTH, f"{len(text)} characters, at most {facts.max_chars}")
    if facts.one_line and ("\n" in text.strip() or "\r" in text.strip()):
        refuse(DraftCode.LENGTH, "more than one line")
    if facts.numbers is not None:
        allowed = set(facts.numbers)
        for value in sorted({n for n in _numbers(text) if n not in allowed}):
            refuse(DraftCode.NUMBER, f"{value:g}")
    odd = _scripts(text) - set(facts.scripts)
    if odd:
        refuse(DraftCode.SCRIPT, ", ".join(sorted(odd)))
    for m in _AMOUNT.finditer(text):
        number = m["a"] or m["b"] or m["c"]
        currency = _SYMBOLS.get(m["sym"] or "", m["code"] or m["code2"] or facts.currency)
        if currency != facts.currency or _minor(number) not in facts.amounts:
            refuse(DraftCode.AMOUNT, m[0].strip())
    for m in _PERCENT.finditer(text):
        if float(m["p"]) not in facts.percents:
            refuse(DraftCode.PERCENT, m[0])
    found, bad = _dates(text)
    for d in found:
        if d not in facts.dates:
            refuse(DraftCode.DATE, d.isoformat())
    for b in bad:
        refuse(DraftCode.DATE, f"unreadable or ambiguous date {b!r}")
    known = {n.lower() for n in facts.invoice_numbers}
    for m in [*_INVOICE.finditer(text), *_INVOICE_ID.finditer(text)]:
        number = (m.groupdict().get("n") or m[0]).rstrip(".,;:")
        if number.lower() not in known and not number.isalpha():
            refuse(DraftCode.INVOICE, number)
    for name, pattern in _OFFERS.items():
        if name in facts.offers:
            continue
        if (m := pattern.search(text)) or (m := _OFFERS_OTHER[name].search(text)):
            refuse(DraftCode.OFFER, f"{name} ({m[0]!r})")
    for m in _URL.finditer(text):
        url = m[0].rstrip(".,;:!?")
        if not any(url.startswith(prefix) for prefix in facts.links):
            refuse(DraftCode.LINK, url)
    contacts = {c.lower() for c in facts.contacts}
    for m in [*_EMAIL.finditer(text), *_PHONE.finditer(text)]:
        value = m[0].strip()
        if value.lower() not in contacts and not _is_date_or_amount(value):
            refuse(DraftCode.CONTACT, "an email address or phone number not in the facts")
    _check_people(text, facts, refuse)
    return refusals


_COMPANY = re.compile(
    r"\b((?:[A-Z][\w&'.-]*\s+){1,3})(Inc|LLC|Ltd|Limited|GmbH|Corp|Corporation|AG|BV|SAS|SARL|"
    r"plc)\b\.?"
)
_CUSTOMER_ID = re.compile(r"\b(?:cus|cust|acct|customer)_[A-Za-z0-9]{4,}\b")
_MARKUP = re.compile(r"<\s*/?\s*[A-Za-z!?][^>]{0,200}>|\]\(")
_WORD = re.compile(r"\w+")
#: this many words of customer-written text in a row, repeated in the draft, is an echo
ECHO_WORDS = 6
_COMPANY_WORDS = (
    "The", "Dear", "Hi", "Hello", "Your", "Our", "Team", "Thanks", "Thank",
    # greetings of the other template languages (fr, de, es): "Bonjour Acme SARL," is Acme's name
    "Bonjour", "Bonsoir", "Cher", "Chère", "Chers", "Équipe", "Merci", "Hallo", "Liebe", "Lieber",
    "Sehr", "Geehrtes", "Geehrte", "Guten", "Tag", "Danke", "Hola", "Estimado", "Estimada",
    "Estimados", "Equipo", "Gracias",
)  # fmt: skip


def _norm_name(name: str) -> str:
    return " ".join(_WORD.findall(name.lower()))


def _check_people(text: str, facts: DraftFacts, refuse: Any) -> None:
    own = [_norm_name(n) for n in facts.names if n.strip()]
    for m in _COMPANY.finditer(text):
        words = m[1].split()
        while words and words[0] in _COMPANY_WORDS:
            words = words[1:]
        name = _norm_name(" ".join(words))
        if name and not any(name in o or o in name for o in own if o):
            refuse(DraftCode.OTHER_CUSTOMER, f"company {(' '.join(words) + ' ' + m[2])!r}")
    ids = {i.lower() for i in facts.customer_ids}
    for m in _CUSTOMER_ID.finditer(text):
        if m[0].lower() not in ids:
            refuse(DraftCode.OTHER_CUSTOMER, f"customer ID {m[0]!r}")
    flat = _norm_name(text)
    for foreign in facts.foreign_names:
        name = _norm_name(foreign)
        if name and name not in own and re.search(rf"\b{re.escape(name)}\b", flat):
            refuse(DraftCode.OTHER_CUSTOMER, "a name that belongs to another customer")
    if INSTRUCTION_PLACEHOLDER in neutralize_llm_text(text, max_chars=max(len(text) * 2, 16)):
        refuse(DraftCode.INSTRUCTION, "text addressed to a model or an operator")
    if m := _MARKUP.search(text):
        refuse(DraftCode.MARKUP, m[0][:40])
    words = flat.split()
    grams = {" ".join(words[i : i + ECHO_WORDS]) for i in range(len(words) - ECHO_WORDS + 1)}
    for source in facts.untrusted:
        src = _norm_name(source).split()
        for i in range(len(src) - ECHO_WORDS + 1):
            if " ".join(src[i : i + ECHO_WORDS]) in grams:
                refuse(DraftCode.ECHO, f"{ECHO_WORDS}+ words of customer-written text")
                return


#: a number standing alone (not inside an ID such as cus_N0RTH1); grouping commas allowed
_BARE_NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")


def _numbers(text: str) -> list[float]:
    return [float(m[0].replace(",", "")) for m in _BARE_NUMBER.finditer(text)]


def facts_from_text(text: str, base: DraftFacts) -> DraftFacts:
    """``base`` widened by every figure a reviewed text states (amounts, percentages, dates,
    invoice numbers): a draft written from a rules text may repeat its figures, no other."""
    amounts = list(base.amounts)
    for m in _AMOUNT.finditer(text):
        amounts.append(_minor(m["a"] or m["b"] or m["c"]))
    percents = list(base.percents) + [float(m["p"]) for m in _PERCENT.finditer(text)]
    found, _ = _dates(text)
    invoices = list(base.invoice_numbers) + [
        (m.groupdict().get("n") or m[0]).rstrip(".,;:")
        for m in [*_INVOICE.finditer(text), *_INVOICE_ID.finditer(text)]
    ]
    return base.model_copy(
        update={
            "amounts": sorted(set(amounts)),
            "percents": sorted(set(percents)),
            "dates": sorted(set(base.dates) | set(found)),
            "invoice_numbers": sorted(set(invoices)),
            "numbers": (
                None if base.numbers is None else sorted(set(base.numbers) | set(_numbers(text)))
            ),
        }
    )


def _is_date_or_amount(value: str) -> bool:
    """A phone-looking run that is really an ISO date or a grouped amount."""
    if _ISO_DATE.fullmatch(value) or _NUMERIC_DATE.fullmatch(value):
        return True
    try:
        datetime.strptime(value, "%Y-%m-%d")
        return True
    except ValueError:
        return bool(re.fullmatch(r"\d{1,3}(?:[, ]\d{3})+(?:\.\d{1,2})?", value))

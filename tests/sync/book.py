"""A book to link (the backfill's tests and bench/sync.py): billing customers and CRM accounts of
every kind ``domain/linking.py`` decides — linked already, the same email, the same company
domain, a similar name, and ambiguous names for a person — as seeds for the Chargebee and
Salesforce (or HubSpot) sandboxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "vo", "ri", "ze", "po", "du", "fe"]
KINDS = ("email", "domain", "name", "linked", "ambiguous")


def _word(i: int) -> str:
    out = ""
    n = i + 1
    while n:
        n, r = divmod(n, len(SYLLABLES))
        out += SYLLABLES[r]
    return out.capitalize()


@dataclass
class Book:
    customers: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    #: customer ID → kind
    kinds: dict[str, str] = field(default_factory=dict)

    def chargebee_seed(self) -> dict[str, Any]:
        return {"customers": self.customers}

    def salesforce_seed(self) -> dict[str, Any]:
        return {"records": {"Account": self.accounts, "Contact": self.contacts}}

    def hubspot_seed(self) -> dict[str, Any]:
        """The same accounts as HubSpot companies (``domain`` bare, as HubSpot keeps it; the
        billing link in ``billing_customer_id`` / ``billing_platform``) and their contacts."""
        props = {
            "Name": "name",
            "Billing_Customer_Id__c": "billing_customer_id",
            "Billing_Platform__c": "billing_platform",
        }
        companies = []
        for a in self.accounts:
            p = {hs: a[sf] for sf, hs in props.items() if a.get(sf)}
            if a.get("Website"):
                p["domain"] = a["Website"].split("//")[-1].removeprefix("www.")
            companies.append({"ref": a["Ref"], "properties": p})
        contacts = [
            {"ref": f"c{n}", "properties": {"lastname": c["LastName"], "email": c["Email"]}}
            for n, c in enumerate(self.contacts)
        ]
        return {
            "objects": {"companies": companies, "contacts": contacts},
            "associations": [
                {"from": f"c{n}", "to": c["AccountId"].removeprefix("@")}
                for n, c in enumerate(self.contacts)
            ],
        }

    def expected(self, kind: str) -> int:
        return sum(1 for k in self.kinds.values() if k == kind)


def make_book(n: int, suffix: str, billing: str = "chargebee") -> Book:
    """``n`` customers, cycling through the kinds (an ambiguous customer brings two accounts)."""
    book = Book()
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        cid = f"bk-{suffix}-{i:05d}"
        word = f"{_word(i)}{suffix[:4]}"
        company = f"{word} Logistics"
        domain = f"{word.lower()}.example"
        ref = f"a{i}"
        customer: dict[str, Any] = {"id": cid, "company": company}
        account: dict[str, Any] = {"Ref": ref, "Name": company}
        if kind == "email":
            customer["email"] = f"ap@{domain}"
            account["Name"] = f"{word} Freight"  # the name alone would not match
            book.contacts.append(
                {"LastName": "Payables", "Email": f"ap@{domain}", "AccountId": f"@{ref}"}
            )
        elif kind == "domain":
            customer["email"] = f"finance@{domain}"
            account["Name"] = f"{word} Cargo"
            account["Website"] = f"https://www.{domain}"
        elif kind == "name":
            customer["email"] = f"{word.lower()}@gmail.com"  # free mail: no domain match
            customer["company"] = f"{company} Inc."
        elif kind == "linked":
            account["Billing_Customer_Id__c"] = cid
            account["Billing_Platform__c"] = billing
        else:  # two accounts alike, free mail: for a person
            customer["email"] = f"{word.lower()}@gmail.com"
            customer["company"] = f"{word} Holdings"
            account["Name"] = f"{word} Holdings East"
            book.accounts.append({"Ref": f"{ref}w", "Name": f"{word} Holdings West"})
        book.customers.append(customer)
        book.accounts.append(account)
        book.kinds[cid] = kind
    return book

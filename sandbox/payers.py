"""Seeded payers who answer the dunning emails they receive: a documented, deterministic, and
entirely SYNTHETIC model of customer behaviour, so a recovery measurement on the sandboxes can
tell two kinds of reminder apart (issue 22: template vs. model-drafted reminders).

Real customers are not this simple. These rules exist so that ``bench/drafting_recovery.py`` and
its test can show recovery rate and time-to-recover per variant from real runs end to end (a
real worker, the billing and CRM sandboxes, the SMTP mailbox, the Anthropic sandbox), and so a
team can see the measuring pipeline work before pointing it at real traffic. A difference the
sandboxes show is a consequence of these rules and of the sandbox model's scripted drafts, never
evidence about real customers.

Each payer reads only what reached their mailbox (the messages addressed to them, oldest first)
and decides, by one rule, whether and when to pay:

- ``link``: pays ``delay_hours`` after the first email that carries a link starting with
  ``link_prefix`` (the billing platform's hosted payment page): a customer who pays when paying
  is one click, and otherwise puts it off forever.
- ``nth``: pays ``delay_hours`` after the ``n``-th reminder, whatever it says.
- ``never``: never pays (the schedule runs to its end).

Pure: no I/O, no clock, no randomness; imports nothing of RevBridge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.scenarios import DunningCustomer

LINK, NTH, NEVER = "link", "nth", "never"


@dataclass(frozen=True)
class Payer:
    """A seeded dunning customer and how they answer reminders."""

    customer: DunningCustomer
    rule: str  # LINK | NTH | NEVER
    n: int = 1
    delay_hours: float = 6.0
    link_prefix: str = ""

    def __post_init__(self) -> None:
        if self.rule not in (LINK, NTH, NEVER):
            raise ValueError(f"unknown payer rule {self.rule!r}")
        if self.rule == LINK and not self.link_prefix:
            raise ValueError("a link payer needs the link prefix it pays through")

    def pays_after(self, inbox: list[dict[str, Any]]) -> int | None:
        """The index (0-based) of the message in ``inbox`` that makes this payer pay, or None:
        they pay ``delay_hours`` after that message arrived."""
        if self.rule == NTH:
            return self.n - 1 if len(inbox) >= self.n else None
        if self.rule == LINK:
            for i, message in enumerate(inbox):
                if self.link_prefix in f"{message.get('subject', '')}\n{message.get('body', '')}":
                    return i
        return None


def population(link_prefix: str, copies: int = 1) -> tuple[Payer, ...]:
    """The seeded payers of the recovery measurement: SMB accounts (email reminders), cards that
    expired (a payment retry cannot recover them: only the customer can), one of each rule —
    a link payer, a prompt payer (after the first reminder), a slow payer (after the second), a
    payer who never pays — ``copies`` times."""
    out: list[Payer] = []
    for c in range(1, copies + 1):

        def customer(key: str, company: str, tag: int = c) -> DunningCustomer:
            return DunningCustomer(
                f"{key}{tag}", f"{company} {tag}", "SMB", "team-monthly", 4_900, 3, 400,
                "expired_card",
            )  # fmt: skip

        out += [
            Payer(customer("linkpay", "Oakridge Labs"), LINK, 1, 2.0, link_prefix),
            Payer(customer("prompt", "Bluefin Studio"), NTH, 1, 30.0),
            Payer(customer("slow", "Kestrel Media"), NTH, 2, 12.0),
            Payer(customer("never", "Quarry Works"), NEVER),
        ]
    return tuple(out)

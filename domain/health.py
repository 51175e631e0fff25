"""The health profile on the CRM account (issue 19): plan, MRR, tenure, payment success rate,
open dunning, usage trend and churn level, and a one-line summary, written beside the golden
fields (Salesforce ``Subscription_Health__c`` and friends, HubSpot company properties).

Pure and deterministic (the workflow passes the time): the account sync reads billing's figures
with its re-read (:class:`HealthInputs`), takes plan and MRR from the golden record and the churn
level from the CRM (the churn use case writes it there), and writes the profile only when one of
its figures changed (:class:`HealthState` remembers what was written). The one-line summary is the
rules line of :func:`domain.drafts.health_rules_line` — or a model's, under containment, through
the drafting activity when ``policies/drafting.yaml`` lists ``health_line``.

Why each rule:
- **Tenure** counts whole months since the customer was created (a customer of 29 days is 0
  months: "customer for 0 months" is honest, a rounded-up month is not).
- **Payment success rate** is over the attempts billing reports for the last 365 days; no
  attempts → unknown (left out), not 100 %.
- **Usage trend** is the direction of the seat count (the main plan's quantity, observed at
  every re-read) over the last :data:`TREND_DAYS` days: more seats "rising", fewer "falling",
  else "flat".
  Metered usage is not read by the sync (the expansion use case reads it).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from domain.drafts import HealthFacts
from domain.models import Frozen

#: how far back the usage trend looks (days of seat-count observations)
TREND_DAYS = 30
#: seat observations a record keeps (one per day at most)
OBSERVATIONS = 40
#: the profile's fields on the CRM account, in the golden record's names (each CRM module maps
#: them: connectors/sync/salesforce.py, hubspot.py)
PROFILE_FIELDS = (
    "health_summary",
    "subscription_health",
    "tenure_months",
    "payment_success_rate",
    "open_dunning",
    "usage_trend",
)


class HealthInputs(Frozen):
    """Billing's figures for the profile, read with the customer (no PII: dates and counts)."""

    #: when the customer was created (ISO date)
    customer_since: str | None = None
    #: payment attempts of the last 365 days (read at most once a day: ``payments_read`` False
    #: means not read this time, the counts last read stand)
    payments_ok: int = 0
    payments_failed: int = 0
    payments_read: bool = True
    #: invoices in dunning now
    open_dunning: int = 0
    #: the main plan's quantity (seats)
    seats: int | None = None
    currency: str = "USD"


class HealthState(Frozen):
    """What the account sync remembers between changes: the seat observations (date → seats)
    and the facts last written (None: nothing written yet)."""

    seats: list[tuple[str, int]] = []
    written: HealthFacts | None = None
    #: the payment attempts last read (ok, failed) and the day they were read
    payments: tuple[int, int] | None = None
    payments_on: str | None = None

    def payments_due(self, today: date) -> bool:
        """Whether the payment attempts are read with this re-read (at most once a day: a
        seat change a minute does not cost a transactions read a minute)."""
        return self.payments_on != today.isoformat()


def tenure_months(since: str | None, today: date) -> int | None:
    if not since:
        return None
    try:
        start = date.fromisoformat(since[:10])
    except ValueError:
        return None
    months = (today.year - start.year) * 12 + (today.month - start.month)
    if today.day < start.day:
        months -= 1
    return max(0, months)


def success_rate(ok: int, failed: int) -> float | None:
    total = ok + failed
    return round(100.0 * ok / total, 1) if total else None


def observe(state: HealthState, seats: int | None, today: date) -> HealthState:
    """A seat count that differs from the last one observed joins the observations (dated)."""
    if seats is None or (state.seats and state.seats[-1][1] == seats):
        return state
    return state.model_copy(
        update={"seats": [*state.seats, (today.isoformat(), seats)][-OBSERVATIONS:]}
    )


def usage_trend(state: HealthState, today: date) -> str | None:
    """The seat count now against :data:`TREND_DAYS` days ago (the count then: the last one
    observed before; the first observed when the record is younger)."""
    if not state.seats:
        return None
    now = state.seats[-1][1]
    older = [n for d, n in state.seats if (today - date.fromisoformat(d)).days > TREND_DAYS]
    base = older[-1] if older else state.seats[0][1]
    return "rising" if now > base else "falling" if now < base else "flat"


def facts(
    customer_id: str,
    golden: dict[str, Any],
    inputs: HealthInputs,
    state: HealthState,
    now: datetime,
) -> tuple[HealthFacts, HealthState]:
    """The profile's figures from the golden record (plan, MRR, account name, churn level) and
    billing's inputs, and the state with today's seat count observed."""
    today = now.date()
    state = observe(state, inputs.seats, today)
    if inputs.payments_read:
        state = state.model_copy(
            update={
                "payments": (inputs.payments_ok, inputs.payments_failed),
                "payments_on": today.isoformat(),
            }
        )
    ok, failed = state.payments or (0, 0)
    mrr = golden.get("mrr")
    return (
        HealthFacts(
            customer_id=customer_id,
            account_name=golden.get("account_name"),
            plan=golden.get("plan"),
            mrr=int(mrr) if isinstance(mrr, int | float) else None,
            currency=inputs.currency or "USD",
            tenure_months=tenure_months(inputs.customer_since, today),
            payment_success_rate=success_rate(ok, failed),
            open_dunning=inputs.open_dunning,
            usage_trend=usage_trend(state, today),
            churn_level=golden.get("churn_level"),
        ),
        state,
    )


def changed(state: HealthState, f: HealthFacts) -> bool:
    """Whether the profile must be written (only when a figure changed)."""
    return state.written != f


def structured(f: HealthFacts) -> str:
    """The structured profile (``Subscription_Health__c``, a long text): one ``key: value`` per
    line, figures only — the account name (customer-controlled) is not repeated here."""
    mrr = f"{f.mrr / 100:.2f} {f.currency}" if f.mrr is not None else None
    rate = f"{f.payment_success_rate:g}%" if f.payment_success_rate is not None else None
    rows = [
        ("plan", f.plan),
        ("mrr", mrr),
        ("tenure_months", f.tenure_months),
        ("payment_success_rate", rate),
        ("open_dunning", f.open_dunning),
        ("usage_trend", f.usage_trend),
        ("churn_level", f.churn_level),
    ]
    return "\n".join(f"{k}: {'unknown' if v is None else v}" for k, v in rows)


def crm_fields(f: HealthFacts, line: str) -> dict[str, Any]:
    """What the account gets (:data:`PROFILE_FIELDS`); unknown figures are written empty."""
    return {
        "health_summary": " ".join(line.split())[:255],
        "subscription_health": structured(f),
        "tenure_months": f.tenure_months,
        "payment_success_rate": f.payment_success_rate,
        "open_dunning": f.open_dunning,
        "usage_trend": f.usage_trend,
    }

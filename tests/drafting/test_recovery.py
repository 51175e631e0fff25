"""Recovery per draft variant from real runs on the sandboxes (issue 22): the seeded payers'
documented rules (``sandbox/payers.py``), then the bench's measurement end to end
(``bench/drafting_recovery.py``: two real workers — templates, and a model on the Anthropic
sandbox — on Chargebee × Salesforce sandboxes and the SMTP mailbox, on a time-skipping server of
its own), read back as ``revbridge report recovery`` reads runs. The payer model is synthetic:
what this proves is that the pipeline measures what the payers do, not how real customers act."""

from __future__ import annotations

import pytest

from bench.drafting_recovery import PAY_LINK, measure, section
from sandbox.payers import LINK, NEVER, NTH, Payer, population
from sandbox.scenarios import DunningCustomer

C = DunningCustomer("p", "P", "SMB", "team-monthly", 4_900, 3, 400, "expired_card")


def mail(body: str) -> dict[str, str]:
    return {"subject": "Invoice INV-1", "body": body}


def test_each_rule_pays_after_the_message_it_documents() -> None:
    link = Payer(C, LINK, delay_hours=2, link_prefix=PAY_LINK)
    assert link.pays_after([mail("please pay")]) is None
    assert link.pays_after([mail("please pay"), mail(f"pay at {PAY_LINK}INV-1")]) == 1
    assert link.pays_after([mail("pay at https://elsewhere.test/INV-1")]) is None
    second = Payer(C, NTH, n=2)
    assert second.pays_after([mail("a")]) is None
    assert second.pays_after([mail("a"), mail("b"), mail("c")]) == 1
    assert Payer(C, NEVER).pays_after([mail(f"{PAY_LINK}x")] * 5) is None
    with pytest.raises(ValueError):
        Payer(C, LINK)  # a link payer needs its link
    with pytest.raises(ValueError):
        Payer(C, "sometimes")
    rules = [(p.rule, p.n) for p in population(PAY_LINK, 2)]
    assert rules == [(LINK, 1), (NTH, 1), (NTH, 2), (NEVER, 1)] * 2
    assert len({p.customer.key for p in population(PAY_LINK, 2)}) == 8


async def test_recovery_rate_and_time_to_recover_per_variant_from_real_runs() -> None:
    r = await measure(copies=2)
    table = {(d["deployment"], d["payer"]): d for d in r["runs"]}
    assert len(table) == 16
    # the template carries no payment link: the link payer never pays, on either copy
    for copy in ("1", "2"):
        d = table[("template", f"linkpay{copy}")]
        assert (d["outcome"], d["counted_as"]) == ("written_off", "template")
    # the model's draft carries the hosted payment link: paid 2 h after the first reminder ...
    d = table[("llm", "linkpay1")]
    assert (d["outcome"], d["counted_as"], d["variants_sent"], d["hours"]) == (
        "recovered",
        "llm",
        "llm",
        2.0,
    )
    # ... unless that draft invented an amount: refused, the template went out (no link), and
    # the payer paid 2 h after the second reminder (day 3), the model's
    d = table[("llm", "linkpay2")]
    assert (d["outcome"], d["variants_sent"], d["counted_as"], d["hours"]) == (
        "recovered",
        "llm,template",
        "llm",
        74.0,
    )
    # payers who do not read the email's content recover alike on both variants
    for deployment in ("template", "llm"):
        for copy in ("1", "2"):
            assert table[(deployment, f"prompt{copy}")]["hours"] == 30.0
            assert table[(deployment, f"slow{copy}")]["hours"] == 84.0
            d = table[(deployment, f"never{copy}")]
            assert (d["outcome"], d["hours"]) == ("written_off", 504.0)  # day 21
    # the report's numbers, per variant (what revbridge report recovery prints)
    s = r["summary"]
    assert (s["template"]["runs"], s["template"]["recovered"]) == (8, 4)
    assert (s["llm"]["runs"], s["llm"]["recovered"]) == (8, 6)
    assert (s["template"]["recovery_rate"], s["llm"]["recovery_rate"]) == (0.5, 0.75)
    assert s["template"]["median_hours_to_recover"] == 57.0
    assert s["llm"]["mean_hours_to_recover"] == round((2 + 74 + 30 * 2 + 84 * 2) / 6, 1)
    assert "SYNTHETIC" in section(r) and "75.0%" in section(r)

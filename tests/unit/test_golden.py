"""The golden record's rules (domain/golden.py) against policies/sync.yaml: ownership, echoes,
late and repeated events, two-way conflicts, significance and discrepancies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.golden import (
    FieldChange,
    GoldenRecord,
    RulesError,
    Side,
    Verdict,
    apply,
    coalesce,
    discrepancies,
    is_immediate,
    load_rules,
    mark_synced,
    resolve,
)

POLICIES = Path(__file__).resolve().parents[2] / "policies"
RULES = load_rules(POLICIES / "sync.yaml")
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def record() -> GoldenRecord:
    return GoldenRecord(billing="chargebee", customer_id="cus-1", crm_account_id="001A")


def change(field: str, value: object, side: Side, minute: float, **kw: object) -> FieldChange:
    return FieldChange(field=field, value=value, side=side, changed_at=at(minute), **kw)  # type: ignore[arg-type]


def test_a_billing_owned_change_is_accepted_and_goes_to_the_crm() -> None:
    out = apply(record(), change("mrr", 990, Side.BILLING, 1, event_id="ev1"), RULES)
    assert out.verdict is Verdict.ACCEPT and out.write_to == [Side.CRM] and out.value == 990
    golden = out.record.fields["mrr"]
    assert (golden.value, golden.source, golden.synced) == (990, Side.BILLING, False)
    assert mark_synced(out.record, "mrr", 990).fields["mrr"].synced


def test_a_crm_edit_to_a_billing_owned_field_is_restored() -> None:
    rec = apply(record(), change("mrr", 990, Side.BILLING, 1), RULES).record
    out = apply(rec, change("mrr", 5, Side.CRM, 2), RULES)
    assert out.verdict is Verdict.RESTORE and out.write_to == [Side.CRM] and out.value == 990
    assert out.record.fields["mrr"].value == 990  # the truth did not move


def test_a_crm_owned_field_flows_to_billing_and_a_billing_edit_is_restored() -> None:
    out = apply(record(), change("account_name", "Globex", Side.CRM, 1), RULES)
    assert out.verdict is Verdict.ACCEPT and out.write_to == [Side.BILLING]
    back = apply(out.record, change("account_name", "GLOBEX LTD", Side.BILLING, 2), RULES)
    assert back.verdict is Verdict.RESTORE and back.value == "Globex"


def test_our_own_write_coming_back_is_an_echo_on_both_sides() -> None:
    out = apply(record(), change("billing_contact", "a@x.io", Side.CRM, 1), RULES)
    assert out.verdict is Verdict.ACCEPT and out.write_to == [Side.BILLING]
    rec = mark_synced(out.record, "billing_contact", "a@x.io")
    # the billing platform reports our write as a change: same value, dropped
    echo = apply(rec, change("billing_contact", "a@x.io", Side.BILLING, 1.5), RULES)
    assert echo.verdict is Verdict.ECHO and echo.write_to == []


def test_a_repeated_event_and_a_late_one_change_nothing() -> None:
    rec = apply(record(), change("plan", "pro", Side.BILLING, 5, event_id="e2"), RULES).record
    dup = apply(rec, change("plan", "pro", Side.BILLING, 5, event_id="e2"), RULES)
    assert dup.verdict is Verdict.DUPLICATE
    late = apply(rec, change("plan", "basic", Side.BILLING, 1, event_id="e1"), RULES)
    assert late.verdict is Verdict.STALE and late.record.value("plan") == "pro"


def test_both_sides_changing_a_two_way_field_is_a_conflict_for_review() -> None:
    out = apply(record(), change("billing_contact", "a@x.io", Side.BILLING, 1), RULES)
    # the CRM user edits before our write reached the CRM
    clash = apply(out.record, change("billing_contact", "b@x.io", Side.CRM, 2), RULES)
    assert clash.verdict is Verdict.CONFLICT and clash.write_to == []
    assert clash.golden is not None and clash.golden.value == "a@x.io"
    assert clash.golden.source is Side.BILLING and clash.value == "b@x.io"
    # earlier on the CRM, arriving later: both changed since the last sync all the same
    early = apply(out.record, change("billing_contact", "c@x.io", Side.CRM, 0.5), RULES)
    assert early.verdict is Verdict.CONFLICT
    # a person picks the CRM's value: written to both, echoes from both are dropped
    rec, targets = resolve(clash.record, "billing_contact", "b@x.io", Side.CRM, at(3))
    assert set(targets) == {Side.BILLING, Side.CRM}
    rec = mark_synced(rec, "billing_contact", "b@x.io")
    for side in Side:
        assert apply(rec, change("billing_contact", "b@x.io", side, 4), RULES).verdict is (
            Verdict.ECHO
        )


def test_after_a_sync_a_later_edit_on_the_other_side_is_a_plain_change() -> None:
    out = apply(record(), change("billing_address", "1 Main St", Side.BILLING, 1), RULES)
    rec = mark_synced(out.record, "billing_address", "1 Main St")
    nxt = apply(rec, change("billing_address", "2 High St", Side.CRM, 2), RULES)
    assert nxt.verdict is Verdict.ACCEPT and nxt.write_to == [Side.BILLING]


def test_a_field_the_rules_do_not_name_is_reported_not_applied() -> None:
    out = apply(record(), change("favourite_colour", "blue", Side.CRM, 1), RULES)
    assert out.verdict is Verdict.UNKNOWN and "favourite_colour" in out.reason
    assert out.record.fields == {}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=12, unique=True),
    st.randoms(use_true_random=False),
    st.integers(min_value=0, max_value=3),
)
def test_shuffled_and_redelivered_events_end_at_the_latest_value(
    minutes: list[int], rnd: object, repeats: int
) -> None:
    events = [
        change("mrr", m * 10, Side.BILLING, m, event_id=f"ev{m}", previous=None) for m in minutes
    ]
    delivered = events + events[:repeats]  # some delivered twice
    rnd.shuffle(delivered)  # type: ignore[attr-defined]
    rec = record()
    for ev in delivered:
        rec = apply(rec, ev, RULES).record
    assert rec.value("mrr") == max(minutes) * 10
    assert rec.fields["mrr"].changed_at == at(max(minutes))


@pytest.mark.parametrize(
    ("field", "value", "previous", "hint", "now"),
    [
        ("mrr", 1500, 1000, None, True),  # +50 %
        ("mrr", 400, 1000, None, True),  # -60 %
        ("mrr", 1100, 1000, None, False),  # +10 %: batched
        ("mrr", 0, 1000, None, True),
        ("plan", "basic", "pro", "downgrade", True),
        ("plan", "pro", "basic", "upgrade", False),
        ("subscription_status", "past_due", "active", None, True),
        ("subscription_status", "active", "past_due", None, False),
        ("payment_health", "failing", "ok", None, True),
        ("usage", 12_345, 12_300, None, False),
        ("account_name", "Globex", "Globex Corp", None, False),
    ],
)
def test_significance_decides_now_or_the_next_batch(
    field: str, value: object, previous: object, hint: str | None, now: bool
) -> None:
    ch = change(field, value, Side.BILLING, 1, previous=previous, hint=hint)
    assert is_immediate(ch, RULES) is now


def test_a_thousand_minor_changes_coalesce_to_one_per_field() -> None:
    minor = [change("usage", 1000 + k, Side.BILLING, k) for k in range(1000)]
    minor += [change("mrr", 990 + k % 3, Side.BILLING, k, previous=990) for k in range(10)]
    batch = coalesce(minor)
    assert set(batch) == {"usage", "mrr"}
    assert batch["usage"].value == 1999 and batch["mrr"].changed_at == at(9)


def test_discrepancies_list_what_each_side_holds_and_what_the_rules_do() -> None:
    rec = apply(record(), change("mrr", 990, Side.BILLING, 1), RULES).record
    rec = mark_synced(rec, "mrr", 990)
    rec = apply(rec, change("billing_contact", "a@x.io", Side.BILLING, 2), RULES).record
    found = discrepancies(
        rec,
        billing={"mrr": 990, "billing_contact": "a@x.io"},
        crm={"mrr": 5, "billing_contact": "b@x.io"},
        rules=RULES,
    )
    assert [(d.field, d.side, d.found, d.action) for d in found] == [
        ("billing_contact", Side.CRM, "b@x.io", "review"),
        ("mrr", Side.CRM, 5, "write"),
    ]


def test_a_bad_rules_file_is_one_line_naming_the_place(tmp_path: Path) -> None:
    bad = tmp_path / "sync.yaml"
    bad.write_text("fields:\n  mrr: {owner: finance}\n")
    with pytest.raises(RulesError, match=r"^sync.yaml: fields.mrr.owner: "):
        load_rules(bad)
    bad.write_text("fields:\n  mrr: {owner: billing, direction: two_way}\n")
    with pytest.raises(RulesError, match="direction is for shared fields only"):
        load_rules(bad)
    bad.write_text("fields: [\n")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)

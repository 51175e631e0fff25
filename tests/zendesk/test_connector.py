"""connectors/zendesk.py against the sandbox, through zenpy: the ticket with its requester and
organization, the billing customer (organization external ID, then requester email), the
internal note exactly once (also after commit-then-timeout and a concurrent update), errors as
one line, preflight."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.zendesk import ZendeskDesk, is_own_note, note_marker
from domain.models import BillingCustomer
from domain.preflight import CheckStatus
from domain.settings import ZendeskSettings
from sandbox.framework import Fault
from sandbox.zendesk import ZendeskEmulator
from tests.zendesk.conftest import seed_account
from webhooks.zendesk import is_echo_body

KEY = "a1b2c3d4e5f6a7b8"


class EmailBilling:
    """Billing's customer lookup by email (the only billing call the desk makes)."""

    def __init__(self, customers: dict[str, list[str]]) -> None:
        self.customers = customers
        self.asked: list[str | None] = []

    def find_customers(self, email: str | None, company: str | None) -> list[BillingCustomer]:
        self.asked.append(email)
        return [BillingCustomer(id=c, email=email) for c in self.customers.get(email or "", [])]


@pytest.fixture
def billing() -> EmailBilling:
    return EmailBilling({"gus@globex.test": ["cust_gus"], "solo@example.test": ["c1", "c2"]})


@pytest.fixture
def desk(zd_settings: ZendeskSettings, billing: EmailBilling) -> ZendeskDesk:
    return ZendeskDesk(zd_settings, billing, "chargebee", timeout_s=2.0)  # type: ignore[arg-type]


def test_ticket_with_requester_and_organization(
    zendesk: ZendeskEmulator, desk: ZendeskDesk
) -> None:
    ids = seed_account(zendesk)
    t = desk.get_ticket(str(ids["org"]))
    assert t.requester is not None and t.requester.email == "ann@acme.test"
    assert t.organization is not None and t.organization.external_id == "cust_org"
    case = desk.get_case(str(ids["org"]))
    assert (case.id, case.subject, case.account_id) == (
        str(ids["org"]),
        "Why was I charged twice?",
        "o20.u10",
    )
    with pytest.raises(NotFound):
        desk.get_case("999999")
    with pytest.raises(NotFound):
        desk.get_case("not-a-number")


def test_customer_by_organization_external_id_first(
    zendesk: ZendeskEmulator, desk: ZendeskDesk, billing: EmailBilling
) -> None:
    ids = seed_account(zendesk)
    account = desk.get_account(desk.get_case(str(ids["org"])).account_id or "")
    assert (account.billing_customer_id, account.billing_platform) == ("cust_org", "chargebee")
    assert account.name == "Acme Corp"
    assert billing.asked == []  # the external ID decided: billing was not asked


def test_customer_by_requester_email(
    zendesk: ZendeskEmulator, desk: ZendeskDesk, billing: EmailBilling
) -> None:
    ids = seed_account(zendesk)
    account = desk.get_account(desk.get_case(str(ids["email"])).account_id or "")
    assert account.billing_customer_id == "cust_gus"
    assert billing.asked == ["gus@globex.test"]


def test_ambiguous_email_links_nothing(zendesk: ZendeskEmulator, desk: ZendeskDesk) -> None:
    ids = seed_account(zendesk)
    t = desk.get_ticket(ids["none"])
    match = desk.find_customer(t.organization, t.requester)
    assert match.customer_id is None and "2 billing customers" in match.detail
    assert (
        desk.get_account(desk.get_case(str(ids["none"])).account_id or "").billing_customer_id
        is None
    )


def test_internal_note_is_private_and_written_once(
    zendesk: ZendeskEmulator, desk: ZendeskDesk
) -> None:
    ids = seed_account(zendesk)
    first = desk.annotate_case(str(ids["org"]), "Billing context: all paid.", KEY)
    again = desk.annotate_case(str(ids["org"]), "Billing context: all paid.", KEY)
    assert first == again
    notes = [c for c in zendesk.comments[ids["org"]] if not c["public"]]
    assert len(notes) == 1 and notes[0]["body"].endswith(note_marker(KEY))
    assert str(notes[0]["id"]) == first
    puts = [r for r in zendesk.ledger if r["method"] == "PUT"]
    assert len(puts) == 1
    assert '"safe_update": true' in puts[0]["body"] and '"public": false' in puts[0]["body"]


def test_note_once_after_commit_then_timeout(zendesk: ZendeskEmulator, desk: ZendeskDesk) -> None:
    """The PUT commits, its answer never comes (the client times out): the retried call finds
    the marker and adds nothing."""
    ids = seed_account(zendesk)
    zendesk.faults.append(
        Fault(
            kind="commit_then_timeout", method="PUT", path=r"/api/v2/tickets/\d+\.json", delay_s=4
        )
    )
    with pytest.raises(ConnectorError) as exc:
        desk.annotate_case(str(ids["org"]), "Billing context.", KEY)
    assert exc.value.kind is ErrorKind.RETRYABLE
    note_id = desk.annotate_case(str(ids["org"]), "Billing context.", KEY)
    notes = [c for c in zendesk.comments[ids["org"]] if not c["public"]]
    assert [str(c["id"]) for c in notes] == [note_id]
    assert len([r for r in zendesk.ledger if r["method"] == "PUT"]) == 1


def test_a_concurrent_update_is_a_409_then_a_reread(
    zendesk: ZendeskEmulator, desk: ZendeskDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier attempt (or an agent) updates the ticket between our read and our PUT: the
    stale stamp is refused, the write re-reads and finds that attempt's note."""
    ids = seed_account(zendesk)
    real = desk._marked_comment
    calls = {"n": 0}

    def racing(tid: int, marker: str) -> str | None:
        found = real(tid, marker)
        calls["n"] += 1
        if calls["n"] == 1:  # the other attempt commits right after our read
            other = ZendeskDesk(desk.settings, None, None)
            other.add_internal_note(tid, "Billing context.", KEY)
        return found

    monkeypatch.setattr(desk, "_marked_comment", racing)
    note_id = desk.add_internal_note(ids["org"], "Billing context.", KEY)
    notes = [c for c in zendesk.comments[ids["org"]] if not c["public"]]
    assert [str(c["id"]) for c in notes] == [note_id]
    statuses = [r["status"] for r in zendesk.ledger if r["method"] == "PUT"]
    assert statuses == [200, 409]


def test_our_note_is_recognised_as_an_echo() -> None:
    body = f"Billing context.\n\n{note_marker(KEY)}"
    assert is_own_note(body) and is_echo_body(body)
    assert not is_own_note("[revbridge:] a customer typing brackets") and not is_echo_body("hi")


def test_rate_limit_is_handed_back_with_its_wait(
    zendesk: ZendeskEmulator, desk: ZendeskDesk
) -> None:
    ids = seed_account(zendesk)
    zendesk.faults.append(Fault(status=429, retry_after=30, path=r"/api/v2/tickets/\d+\.json"))
    with pytest.raises(ConnectorError) as exc:
        desk.get_ticket(ids["org"])  # zenpy would sleep 30 s in the worker thread: not here
    assert exc.value.kind is ErrorKind.RATE_LIMITED and exc.value.retry_after == 30
    assert "\n" not in str(exc.value)
    zendesk.faults.append(Fault(status=503, path=r"/api/v2/tickets/\d+\.json"))
    with pytest.raises(ConnectorError) as exc:
        desk.get_ticket(ids["org"])
    assert exc.value.kind is ErrorKind.RETRYABLE and exc.value.status == 503


def test_preflight(zendesk: ZendeskEmulator, zd_settings: ZendeskSettings) -> None:
    ok = ZendeskDesk(zd_settings).preflight()
    assert [(c.name, c.status) for c in ok] == [
        ("credentials", CheckStatus.OK),
        ("role", CheckStatus.OK),
    ]
    bad = ZendeskDesk(zd_settings.model_copy(update={"api_token": SecretStr("nope")})).preflight()
    assert bad[0].status is CheckStatus.FAIL and "401" in bad[0].detail
    zendesk.seed({"users": [{"email": "enduser@example.test", "role": "end-user"}]})
    zendesk.agent_tokens["enduser@example.test"] = "t"
    enduser = ZendeskDesk(
        zd_settings.model_copy(
            update={"email": "enduser@example.test", "api_token": SecretStr("t")}
        )
    ).preflight()
    assert enduser[1].status is CheckStatus.FAIL


def test_preflight_reads_oauth_scopes(
    zendesk: ZendeskEmulator, zd_settings: ZendeskSettings
) -> None:
    zendesk.oauth_tokens["ro"] = ("agent@revbridge.test", ["read"])
    zendesk.oauth_tokens["rw"] = ("agent@revbridge.test", ["read", "write"])
    base = zd_settings.model_copy(update={"api_token": None, "email": None})
    ro = ZendeskDesk(base.model_copy(update={"oauth_token": SecretStr("ro")})).preflight()
    rw = ZendeskDesk(base.model_copy(update={"oauth_token": SecretStr("rw")})).preflight()
    assert ro[-1].name == "scopes" and ro[-1].status is CheckStatus.FAIL
    assert "write" in ro[-1].detail
    assert rw[-1].status is CheckStatus.OK


def test_doctor_checks_the_desk_beside_the_crm(zd_settings: ZendeskSettings) -> None:
    """`revbridge doctor` runs the desk's preflight when REVBRIDGE_DESK=zendesk."""
    from cli.doctor import desk_checks
    from domain.settings import Settings

    settings = Settings(billing="chargebee", crm="salesforce", desk="zendesk", zendesk=zd_settings)
    assert [(c.system, c.name, c.status) for c in desk_checks(settings)] == [
        ("zendesk", "credentials", CheckStatus.OK),
        ("zendesk", "role", CheckStatus.OK),
    ]
    refused = settings.model_copy(
        update={"zendesk": zd_settings.model_copy(update={"api_token": SecretStr("nope")})}
    )
    (first, *_) = desk_checks(refused)
    assert first.status is CheckStatus.FAIL and "nope" not in first.line()

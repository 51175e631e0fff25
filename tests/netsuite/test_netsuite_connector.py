"""The NetSuite connector against the sandbox: posting journal entries exactly once (a retry
after a commit-then-timeout is one entry in the ledger), NetSuite's refusals as one clear
error, 429s retried, SuiteQL paging, OAuth 2.0 client credentials, and preflight."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from connectors.base import ConnectorError, ErrorKind
from connectors.netsuite import NetSuiteErp, amount
from domain.preflight import CheckStatus
from domain.revenue import Accounts, JournalEntry, JournalLine, RevenueLine, journal_entries
from domain.settings import NetSuiteSettings

from .conftest import ACCOUNT, ACCOUNTS, CERT_ID, CLIENT_ID, entries, ledger, tba_settings

PUT_PATH = r"/services/rest/record/v1/journalEntry/eid:.*"


def march_entries() -> list[JournalEntry]:
    lines = [
        RevenueLine(
            source_id="in_1",
            product="pro",
            currency="USD",
            amount=310_00,
            start=date(2026, 3, 1),
            end=date(2026, 4, 1),
        ),
        RevenueLine(
            source_id="in_2",
            product="onboarding",
            currency="USD",
            amount=1_000_00,
            start=date(2026, 3, 16),
            end=date(2026, 4, 15),
        ),
        RevenueLine(
            source_id="in_3",
            product="pro",
            currency="EUR",
            amount=99_99,
            start=date(2026, 3, 10),
            end=date(2026, 4, 10),
        ),
    ]
    found = {e.currency: e for e in journal_entries(lines, ACCOUNTS, through="2026-03")}
    return [found["USD"], found["EUR"]]


def test_posts_balanced_entries_with_accounts_and_currencies_mapped(ns, connector) -> None:
    em, url = ns
    erp = connector()
    usd, eur = march_entries()
    ids = [erp.post_journal_entry(usd), erp.post_journal_entry(eur)]
    assert len(set(ids)) == 2
    got = httpx.get(url + "/_sandbox/netsuite/journal_entries").json()["journal_entries"]
    by_ext = {e["externalId"]: e for e in got}
    posted = by_ext[usd.external_id]
    assert posted["id"] == ids[0]
    assert posted["tranDate"] == "2026-03-31"
    assert posted["currency"]["refName"] == "USD"
    assert by_ext[eur.external_id]["currency"]["refName"] == "EUR"
    lines = posted["line"]["items"]
    # Deferred revenue (2400 → internal 250) debited by the total; 4000 and 4100 credited
    want = {
        ("250", "debit", amount(usd.lines[0].debit, "USD")),
        *(("54" if x.account == "4000" else "55", "credit", amount(x.credit, "USD"))
          for x in usd.lines[1:]),
    }  # fmt: skip
    assert {
        (x["account"]["id"], k, x[k]) for x in lines for k in ("debit", "credit") if k in x
    } == want
    assert sum(x.get("debit", 0) for x in lines) == pytest.approx(
        sum(x.get("credit", 0) for x in lines)
    )
    # idempotent by external ID: posting again writes nothing and answers the same ID
    puts = len(ledger(url, "PUT"))
    assert erp.post_journal_entry(usd) == ids[0]
    assert len(ledger(url, "PUT")) == puts
    assert len(entries(url)) == 2


def test_retry_after_commit_then_timeout_is_one_entry(ns, connector) -> None:
    em, url = ns
    usd = march_entries()[0]
    erp = connector(timeout_s=1.0)
    erp.post_journal_entry(march_entries()[1])  # warm the lookups
    httpx.post(
        url + "/_sandbox/faults",
        json={"kind": "commit_then_timeout", "method": "PUT", "path": PUT_PATH, "delay_s": 2.5},
    ).raise_for_status()
    with pytest.raises(ConnectorError) as err:
        erp.post_journal_entry(usd)
    assert err.value.kind is ErrorKind.RETRYABLE and "timeout" in str(err.value)
    assert [e["externalId"] for e in entries(url)].count(usd.external_id) == 1  # it committed
    # the activity's retry: a fresh connector (another worker, say) finds it and writes nothing
    again = connector().post_journal_entry(usd)
    assert [e["id"] for e in entries(url) if e["externalId"] == usd.external_id] == [again]
    puts = [r for r in ledger(url, "PUT") if usd.external_id in r["path"]]
    assert len(puts) == 1 and puts[0].get("fault") == "commit_then_timeout"


def test_upsert_replay_after_timeout_is_one_entry(ns, connector) -> None:
    """Two attempts racing past the read-back both PUT: the upsert keeps it one entry."""
    em, url = ns
    usd = march_entries()[0]
    erp = connector(timeout_s=1.0)
    erp.post_journal_entry(march_entries()[1])
    httpx.post(
        url + "/_sandbox/faults",
        json={"kind": "commit_then_timeout", "method": "PUT", "path": PUT_PATH, "delay_s": 2.5},
    ).raise_for_status()
    with pytest.raises(ConnectorError):
        erp.post_journal_entry(usd)
    # replay the very PUT (as an attempt that had read "absent" before the first committed)
    body = erp._body(usd)
    erp._request(
        "PUT", f"/services/rest/record/v1/journalEntry/eid:{usd.external_id}", what="x", json=body
    )
    assert [e["externalId"] for e in entries(url)].count(usd.external_id) == 1


def test_unbalanced_entry_is_refused_with_one_clear_line(ns, connector) -> None:
    em, url = ns
    bad = JournalEntry(
        external_id="rb-rev-2026-03-usd-unbalanced1",
        month="2026-03",
        currency="USD",
        date=date(2026, 3, 31),
        memo="unbalanced",
        lines=[
            JournalLine(account="2400", debit=100_00),
            JournalLine(account="4000", credit=99_99),
        ],
    )
    with pytest.raises(ConnectorError) as err:
        connector().post_journal_entry(bad)
    e = err.value
    assert e.kind is ErrorKind.PERMANENT and e.status == 400 and e.code == "USER_ERROR"
    assert "not in balance" in str(e) and "\n" not in str(e)
    assert entries(url) == []


def test_unknown_account_and_closed_period_are_permanent(ns, connector) -> None:
    em, url = ns
    usd = march_entries()[0]
    erp = connector(accounts=Accounts(deferred_revenue="2400", revenue="4999"))
    stray = usd.model_copy(update={"lines": [
        JournalLine(account="2400", debit=5_00), JournalLine(account="4999", credit=5_00)
    ]})  # fmt: skip
    with pytest.raises(ConnectorError) as err:
        erp.post_journal_entry(stray)
    assert err.value.code == "unknown_account" and "4999" in str(err.value)
    httpx.post(url + "/_sandbox/seed", json={"closed_periods": ["2026-03"]}).raise_for_status()
    with pytest.raises(ConnectorError) as err:
        erp.post_journal_entry(usd)
    assert err.value.kind is ErrorKind.PERMANENT and "closed" in str(err.value)


def test_concurrency_429_is_retried_then_handed_to_temporal(ns, connector) -> None:
    em, url = ns
    usd, eur = march_entries()
    erp = connector()
    httpx.post(
        url + "/_sandbox/faults",
        json={"status": 429, "method": "PUT", "path": PUT_PATH, "times": 2},
    ).raise_for_status()
    assert erp.post_journal_entry(usd)
    statuses = [r["status"] for r in ledger(url, "PUT")]
    assert statuses == [429, 429, 204]
    assert ledger(url, "PUT")[-1]["headers"]["x-netsuite-propertynamevalidation"] == "Error"
    refused = ledger(url, "PUT")[0]
    assert refused.get("fault") == "status"
    httpx.post(
        url + "/_sandbox/faults",
        json={"status": 429, "method": "PUT", "path": PUT_PATH, "times": -1},
    ).raise_for_status()
    with pytest.raises(ConnectorError) as err:
        erp.post_journal_entry(eur)
    e = err.value
    assert e.kind is ErrorKind.RATE_LIMITED and e.code == "CONCURRENCY_LIMIT_EXCEEDED"
    assert e.retry_after and e.retry_after > 0


def test_real_concurrency_limit_is_retried(ns, connector) -> None:
    """The emulator's own gate (not an injected fault): two slots, requests held 0.6 s, three
    callers at once — the third's 429 is waited out by the connector."""
    import concurrent.futures

    em, url = ns
    httpx.post(url + "/_sandbox/netsuite/concurrency", json={"limit": 2, "hold_s": 0.6})
    erps = [connector() for _ in range(3)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        found = list(pool.map(lambda e: e.find_entries("2026-03"), erps))
    assert found == [[], [], []]
    assert 429 in [r["status"] for r in ledger(url, "POST")]


def test_find_entries_pages_through_suiteql(ns, connector) -> None:
    em, url = ns
    seeded = [
        {
            "externalId": f"rb-rev-2026-03-usd-seed{i:02d}",
            "subsidiary": {"id": "1"},
            "currency": {"id": "1"},
            "tranDate": "2026-03-31",
            "memo": f"seeded {i}",
            "line": {
                "items": [
                    {"account": {"id": "250"}, "debit": 10 + i},
                    {"account": {"id": "54"}, "credit": 10 + i},
                ]
            },
        }  # fmt: skip
        for i in range(5)
    ]
    other = {**seeded[0], "externalId": "rb-rev-2026-04-usd-seed99", "tranDate": "2026-04-30"}
    httpx.post(
        url + "/_sandbox/seed", json={"journal_entries": [*seeded, other]}
    ).raise_for_status()
    found = connector(page_size=2).find_entries("2026-03")
    assert [f.external_id for f in found] == [s["externalId"] for s in seeded]
    assert {f.tran_date for f in found} == {date(2026, 3, 31)}
    pages = ledger(url, "POST", "/services/rest/query/v1/suiteql")
    assert [r["query"] for r in pages] == [
        "limit=2&offset=0", "limit=2&offset=2", "limit=2&offset=4"
    ]  # fmt: skip
    assert all(r["headers"].get("prefer") == "transient" for r in pages)


def test_oauth2_client_credentials(ns, connector, m2m_key) -> None:
    em, url = ns
    settings = NetSuiteSettings(
        account_id=ACCOUNT,
        api_url=url,
        client_id=CLIENT_ID,
        certificate_id=CERT_ID,
        private_key_file=str(m2m_key[0]),
    )
    erp = connector(settings)
    assert erp.mode == "m2m"
    first = erp.post_journal_entry(march_entries()[0])
    assert erp.post_journal_entry(march_entries()[0]) == first
    tokens = ledger(url, "POST", "/services/rest/auth/oauth2/v1/token")
    assert len(tokens) == 1  # cached across calls
    assert "<redacted>" in tokens[0]["body"]  # the assertion never sits in the ledger
    bad = settings.model_copy(update={"certificate_id": "unknown-kid"})
    with pytest.raises(ConnectorError) as err:
        connector(bad).find_entries("2026-03")
    assert err.value.code == "auth_failed" and err.value.kind is ErrorKind.PERMANENT


def test_preflight_against_the_sandbox(ns, connector) -> None:
    em, url = ns
    checks = connector().preflight()
    assert {c.name: c.status for c in checks} == {
        "credentials": CheckStatus.OK,
        "subsidiary:1": CheckStatus.OK,
        "account:2400": CheckStatus.OK,
        "account:4000": CheckStatus.OK,
        "account:4100": CheckStatus.OK,
    }
    httpx.post(
        url + "/_sandbox/seed",
        json={
            "accounts": [
                {"id": "54", "acctnumber": "4000", "accttype": "Income", "isinactive": "T"}
            ]
        },
    ).raise_for_status()
    wrong = Accounts(deferred_revenue="4100", revenue="4000", products={"x": "4200"})
    by_name = {c.name: c for c in connector(accounts=wrong).preflight()}
    assert by_name["account:4100"].status is CheckStatus.FAIL
    assert "DeferRevenue" in by_name["account:4100"].detail
    assert (
        by_name["account:4000"].status is CheckStatus.FAIL
        and "inactive" in by_name["account:4000"].detail
    )
    assert by_name["account:4200"].status is CheckStatus.FAIL and by_name["account:4200"].fix
    bad = connector(tba_settings(url, token_secret="not-the-secret")).preflight()
    assert [(c.name, c.status) for c in bad] == [("credentials", CheckStatus.FAIL)]
    assert "not-the-secret" not in bad[0].line() and "INVALID_LOGIN" in bad[0].line()


def test_settings_and_doctor_hook(ns, monkeypatch) -> None:
    from cli.doctor import erp_checks
    from connectors.registry import build_erp
    from domain.settings import Settings, SettingsError

    em, url = ns
    env = {
        "NETSUITE_ACCOUNT_ID": ACCOUNT,
        "NETSUITE_API_URL": url,
        "NETSUITE_CONSUMER_KEY": "ck-revbridge-0001",
        "NETSUITE_CONSUMER_SECRET": "cs-s3cret&with/odd=chars",
        "NETSUITE_TOKEN_ID": "tk-revbridge-0001",
        "NETSUITE_TOKEN_SECRET": "ts-s3cret",
    }
    settings = Settings.from_env(env)
    assert settings.netsuite is not None and "ts-s3cret" not in repr(settings)
    checks = erp_checks(settings)
    assert [c.status for c in checks] == [CheckStatus.OK] * 5, [c.line() for c in checks]
    assert build_erp(Settings.from_env({})) is None
    half = Settings.from_env({k: v for k, v in env.items() if k != "NETSUITE_TOKEN_SECRET"})
    with pytest.raises(SettingsError):
        build_erp(half)
    failed = erp_checks(half)
    assert [(c.name, c.status) for c in failed] == [("configuration", CheckStatus.FAIL)]


def test_external_ids_are_checked_before_sending(ns, connector) -> None:
    em, url = ns
    bad = march_entries()[0].model_copy(update={"external_id": "rb|rev"})
    with pytest.raises(ConnectorError) as err:
        connector().post_journal_entry(bad)
    assert err.value.code == "bad_external_id"
    assert ledger(url) == []


def test_amounts_follow_the_currency_exponent() -> None:
    assert amount(12345, "USD") == 123.45
    assert amount(500, "JPY") == 500
    assert amount(1234, "KWD") == 1.234
    assert isinstance(NetSuiteErp, type)


def test_revbridge_doctor_runs_the_netsuite_preflight_when_configured(ns) -> None:
    """``run_checks`` as ``revbridge doctor`` runs it: NetSuite's lines are there (accounts from
    the shipped policies/revenue.yaml), and no secret reaches the printed output."""
    import asyncio
    import io

    from cli.doctor import render, run_checks, secrets_of
    from sandbox.framework import free_port

    em, url = ns
    env = {
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port('127.0.0.1')}",  # nothing listens: one FAIL
        "NETSUITE_ACCOUNT_ID": ACCOUNT,
        "NETSUITE_API_URL": url,
        "NETSUITE_CONSUMER_KEY": "ck-revbridge-0001",
        "NETSUITE_CONSUMER_SECRET": "cs-s3cret&with/odd=chars",
        "NETSUITE_TOKEN_ID": "tk-revbridge-0001",
        "NETSUITE_TOKEN_SECRET": "ts-s3cret",
    }
    checks, settings = asyncio.run(run_checks(env, timeout_s=30))
    ours = [c for c in checks if c.system == "netsuite"]
    assert [(c.name, c.status) for c in ours] == [
        ("credentials", CheckStatus.OK),
        ("subsidiary:1", CheckStatus.OK),
        ("account:2400", CheckStatus.OK),
        ("account:4000", CheckStatus.OK),
        ("account:4100", CheckStatus.OK),
    ]
    out = io.StringIO()
    render(checks, secrets_of(settings, env), out, colour=False)
    assert "OK    netsuite: credentials — TBA, account 1234567_SB1" in out.getvalue()
    for secret in ("ts-s3cret", "cs-s3cret", "tk-revbridge-0001", "ck-revbridge-0001"):
        assert secret not in out.getvalue()

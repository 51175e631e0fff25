"""The NetSuite sandbox over raw HTTP: its TBA check (signed here by an independent RFC 5849
implementation, and refused with NetSuite's 401 body for a wrong signature, realm, method,
replayed nonce), its record service and SuiteQL rules, its concurrency gate and token endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import jwt
import pytest

from .conftest import ACCOUNT, CERT_ID, CLIENT_ID, TBA, entries

RECORD = "/services/rest/record/v1"
SUITEQL = "/services/rest/query/v1/suiteql"


def pct(v: str) -> str:
    return quote(v, safe="-._~")


def oauth_header(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    secret: str = TBA.consumer_secret,
    realm: str = ACCOUNT,
    sig_method: str = "HMAC-SHA256",
    nonce: str | None = None,
) -> str:
    parts = urlsplit(url)
    params = {
        "oauth_consumer_key": TBA.consumer_key,
        "oauth_token": TBA.token_id,
        "oauth_nonce": nonce or secrets.token_hex(12),
        "oauth_timestamp": str(int(time.time())),
        "oauth_signature_method": sig_method,
        "oauth_version": "1.0",
    }
    if body:
        params["oauth_body_hash"] = base64.b64encode(hashlib.sha1(body).digest()).decode()  # noqa: S324
    pairs = sorted((pct(k), pct(v)) for k, v in [*params.items(), *parse_qsl(parts.query)])
    norm = "&".join(f"{k}={v}" for k, v in pairs)
    base = "&".join(
        [method, pct(f"{parts.scheme}://{parts.netloc}".lower() + parts.path), pct(norm)]
    )
    key = f"{pct(secret)}&{pct(TBA.token_secret)}"
    digest = hashlib.sha256 if sig_method == "HMAC-SHA256" else hashlib.sha1
    params["oauth_signature"] = base64.b64encode(
        hmac.new(key.encode(), base.encode(), digest).digest()
    ).decode()
    fields = ", ".join(f'{k}="{pct(v)}"' for k, v in params.items())
    return f'OAuth realm="{realm}", {fields}'


def send(method: str, url: str, body: dict | None = None, **sign: object) -> httpx.Response:
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"Authorization": oauth_header(method, url, raw, **sign)}  # type: ignore[arg-type]
    if body is not None:
        headers["Content-Type"] = "application/json"
    if SUITEQL in url:
        headers["Prefer"] = "transient"
    return httpx.request(method, url, content=raw, headers=headers)


def je(ext: str | None = "ext-1", debit: float = 100.0, credit: float = 100.0) -> dict:
    body = {
        "subsidiary": {"id": "1"},
        "currency": {"id": "1"},
        "tranDate": "2026-03-31",
        "memo": "test",
        "line": {
            "items": [
                {"account": {"id": "250"}, "debit": debit},
                {"account": {"id": "54"}, "credit": credit},
            ]
        },
    }
    return {**body, "externalId": ext} if ext else body


def assert_invalid_login(resp: httpx.Response) -> None:
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/vnd.oracle.resource+json")
    body = resp.json()
    assert body["title"] == "Unauthorized" and body["status"] == 401
    assert body["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
    assert "Login Audit Trail" in body["o:errorDetails"][0]["detail"]


def test_signature_checked_the_netsuite_way(ns) -> None:
    em, url = ns
    q = f"{url}{SUITEQL}?limit=5&offset=0"
    body = {"q": "SELECT id FROM subsidiary"}
    ok = send("POST", q, body)
    assert ok.status_code == 200, ok.text
    assert ok.json()["items"] == [{"links": [], "id": "1"}]
    assert_invalid_login(send("POST", q, body, secret="wrong-secret"))
    assert_invalid_login(send("POST", q, body, realm="1234567_sb1"))  # realm keeps its case
    assert_invalid_login(send("POST", q, body, sig_method="HMAC-SHA1"))  # ended in 2023.1
    assert_invalid_login(httpx.post(q, json=body, headers={"Prefer": "transient"}))
    # a body other than the one signed (oauth_body_hash), and a replayed nonce
    raw = json.dumps(body).encode()
    tampered = httpx.post(
        q,
        content=json.dumps({"q": "SELECT id FROM account"}).encode(),
        headers={"Authorization": oauth_header("POST", q, raw), "Prefer": "transient"},
    )
    assert_invalid_login(tampered)
    assert send("POST", q, body, nonce="fixed-nonce-1").status_code == 200
    assert_invalid_login(send("POST", q, body, nonce="fixed-nonce-1"))
    # the query string is signed: a signature for other paging parameters fails
    moved = httpx.post(
        f"{url}{SUITEQL}?limit=5&offset=5",
        content=raw,
        headers={"Authorization": oauth_header("POST", q, raw), "Prefer": "transient"},
    )
    assert_invalid_login(moved)


def test_record_service_create_read_duplicate_and_upsert(ns) -> None:
    em, url = ns
    created = send("POST", f"{url}{RECORD}/journalEntry", je("ext-1"))
    assert created.status_code == 204 and created.content == b""
    location = created.headers["location"]
    assert location.startswith(f"{url}{RECORD}/journalEntry/")
    new_id = location.rsplit("/", 1)[1]
    got = send("GET", location).json()
    assert got["id"] == new_id and got["externalId"] == "ext-1"
    assert "items" not in got["line"]
    full = send("GET", f"{url}{RECORD}/journalEntry/eid:ext-1?expandSubResources=true").json()
    assert [
        (x["account"]["id"], x.get("debit"), x.get("credit")) for x in full["line"]["items"]
    ] == [
        ("250", 100.0, None),
        ("54", None, 100.0),
    ]
    dup = send("POST", f"{url}{RECORD}/journalEntry", je("ext-1"))
    assert dup.status_code == 400 and dup.json()["o:errorDetails"][0]["o:errorPath"] == "externalId"
    # upsert: create when absent, replace when present, always one record per external ID
    put = f"{url}{RECORD}/journalEntry/eid:ext-2"
    assert send("PUT", put, je(None)).status_code == 204
    assert send("PUT", put, je(None, 50.0, 50.0)).status_code == 204
    assert [e["externalId"] for e in entries(url)] == ["ext-1", "ext-2"]
    assert entries(url)[1]["line"]["items"][0]["debit"] == 50.0
    assert send("GET", f"{url}{RECORD}/journalEntry/eid:nope").status_code == 404


def test_journal_entries_are_validated(ns) -> None:
    em, url = ns
    post = f"{url}{RECORD}/journalEntry"
    unbalanced = send("POST", post, je("u1", 100.0, 99.99))
    assert unbalanced.status_code == 400
    detail = unbalanced.json()["o:errorDetails"][0]
    assert detail["o:errorCode"] == "USER_ERROR" and "not in balance" in detail["detail"]
    bad_account = je("u2")
    bad_account["line"]["items"][1]["account"] = {"id": "9999"}
    resp = send("POST", post, bad_account).json()
    assert resp["o:errorDetails"][0]["o:errorCode"] == "INVALID_CONTENT"
    assert resp["o:errorDetails"][0]["o:errorPath"] == "line.items[1].account"
    both = je("u3")
    both["line"]["items"][0]["credit"] = 5
    assert send("POST", post, both).status_code == 400
    httpx.post(url + "/_sandbox/seed", json={"closed_periods": ["2026-03"]})
    closed = send("POST", post, je("u4")).json()
    assert "closed" in closed["o:errorDetails"][0]["detail"]
    strict = je("u5", 1, 1)
    strict["tranDate"] = "2026-04-30"
    strict["bogus"] = 1
    raw = json.dumps(strict).encode()
    headers = {
        "Authorization": oauth_header("POST", post, raw),
        "Content-Type": "application/json",
        "X-NetSuite-PropertyNameValidation": "error",
    }
    resp = httpx.post(post, content=raw, headers=headers)
    assert (
        resp.status_code == 400
        and resp.json()["o:errorDetails"][0]["o:errorCode"] == "NONEXISTENT_FIELD"
    )
    assert entries(url) == []


def test_suiteql_rules(ns) -> None:
    em, url = ns
    body = {"q": "SELECT id, acctnumber FROM account WHERE accttype = 'Income' ORDER BY acctnumber"}
    page = send("POST", f"{url}{SUITEQL}?limit=1&offset=0", body).json()
    assert page["count"] == 1 and page["hasMore"] and page["totalResults"] == 2
    assert page["items"][0]["acctnumber"] == "4000"
    assert [link["rel"] for link in page["links"]] == ["self", "next"]
    assert send("POST", f"{url}{SUITEQL}?limit=2&offset=1", body).status_code == 400
    assert send("POST", f"{url}{SUITEQL}?limit=1001", body).status_code == 400
    bad = send("POST", f"{url}{SUITEQL}", {"q": "SELECT nope FROM account"})
    assert bad.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_PARAMETER"
    raw = json.dumps(body).encode()
    q = f"{url}{SUITEQL}"
    no_prefer = httpx.post(q, content=raw, headers={"Authorization": oauth_header("POST", q, raw)})
    assert no_prefer.status_code == 400


def test_concurrency_gate_answers_netsuites_429(ns) -> None:
    em, url = ns
    httpx.post(url + "/_sandbox/netsuite/concurrency", json={"limit": 2, "hold_s": 0.5})
    results: list[httpx.Response] = []
    target = f"{url}{RECORD}/subsidiary/1"

    def call() -> None:
        results.append(send("GET", target))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 200, 429]
    refused = next(r for r in results if r.status_code == 429).json()
    assert refused["status"] == 429
    assert refused["o:errorDetails"] == [
        {
            "detail": "Concurrent request limit exceeded. Request blocked.",
            "o:errorCode": "CONCURRENCY_LIMIT_EXCEEDED",
        }
    ]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({}, None),
        ({"scope": "restlets, rest_webservices"}, None),
        ({"scope": ["suite_analytics"]}, "invalid_scope"),
        ({"aud": "https://elsewhere/token"}, "invalid_client"),
        ({"iss": "someone-else"}, "invalid_client"),
        ({"exp_in": 7200}, "invalid_request"),
    ],
)
def test_token_endpoint(ns, m2m_key, change: dict, error: str | None) -> None:
    em, url = ns
    token_url = f"{url}/services/rest/auth/oauth2/v1/token"
    now = int(time.time())
    claims = {
        "iss": CLIENT_ID,
        "scope": ["rest_webservices"],
        "aud": token_url,
        "iat": now,
        "exp": now + change.pop("exp_in", 1800),
        **change,
    }
    assertion = jwt.encode(
        claims, m2m_key[0].read_bytes(), algorithm="PS256", headers={"kid": CERT_ID}
    )
    resp = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    if error:
        assert resp.status_code == 400 and resp.json() == {"error": error}
        return
    token = resp.json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 3600
    ok = httpx.get(
        f"{url}{RECORD}/subsidiary/1", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert ok.status_code == 200 and ok.json()["name"] == "Parent Company"
    assert_invalid_login(
        httpx.get(f"{url}{RECORD}/subsidiary/1", headers={"Authorization": "Bearer forged"})
    )

"""The Marketing Cloud sandbox as a TM client sees it (reference §3.7): the auth host, send
definitions, a send under a message key (a reuse is not a second send), status, errors, limits."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from sandbox.marketing_cloud import MarketingCloudEmulator
from tests.marketing_cloud.conftest import ACCOUNT, CLIENT_ID, token

MSG = "/messaging/v1/email/messages"
DEFS = "/messaging/v1/email/definitions"


def _client(url: str, **token_extra: object) -> httpx.Client:
    t = token(url, **token_extra)
    return httpx.Client(
        base_url=t["rest_instance_url"], headers={"Authorization": f"Bearer {t['access_token']}"}
    )


def _send(c: httpx.Client, key: str, to: str = "ap@acme.test", **attrs: str) -> httpx.Response:
    return c.post(
        f"{MSG}/{quote(key, safe='')}",
        json={
            "definitionKey": "revbridge-dunning",
            "recipient": {"contactKey": to, "to": to, "attributes": attrs},
        },
    )


def test_token_answer_has_the_documented_shape_and_bad_credentials_are_invalid_client(
    mc: MarketingCloudEmulator, mc_url: str
) -> None:
    t = token(mc_url, account_id=ACCOUNT)
    assert t["token_type"] == "Bearer" and t["expires_in"] == 1079
    assert t["rest_instance_url"] == f"{mc_url}/" and t["soap_instance_url"] == f"{mc_url}/"
    assert set(t["scope"].split()) == {"email_send", "email_read", "email_write"}
    bad = httpx.post(
        f"{mc_url}/v2/token",
        json={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "x"},
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    form = httpx.post(f"{mc_url}/v2/token", data={"grant_type": "client_credentials"})
    assert form.status_code == 400  # JSON only
    # the secret never reaches the ledger in clear
    assert all("mc-s3cret" not in r["body"] for r in mc.ledger)


def test_rest_calls_need_a_live_token_with_the_route_scope(
    mc: MarketingCloudEmulator, mc_url: str
) -> None:
    anon = httpx.get(f"{mc_url}{DEFS}")
    assert anon.status_code == 401
    assert anon.json() == {
        "message": "Not Authorized",
        "errorcode": 0,
        "documentation": anon.json()["documentation"],
    }
    with _client(mc_url, scope="email_read") as c:
        assert c.get(DEFS).status_code == 200
        refused = _send(c, "k-scope")
        assert refused.status_code == 403 and refused.json()["errorcode"] == 20002
    with _client(mc_url) as c:
        assert c.get(DEFS).status_code == 200
        mc.clock_offset += 1201  # 20 minutes later the token is dead
        assert c.get(DEFS).status_code == 401


def test_definitions_crud_with_the_documented_codes(
    mc: MarketingCloudEmulator, mc_url: str
) -> None:
    body = {
        "definitionKey": "welcome",
        "name": "Welcome",
        "content": {"customerKey": "revbridge-reminder"},
        "subscriptions": {"list": "All Subscribers"},
    }
    with _client(mc_url) as c:
        made = c.post(DEFS, json=body)
        assert made.status_code == 201 and made.json()["status"] == "Active"
        assert made.json()["definitionId"]
        assert c.post(DEFS, json=body).json()["errorcode"] == 30004
        commercial = c.post(
            DEFS,
            json={
                **body,
                "definitionKey": "promo",
                "name": "Promo",
                "classification": "Default Commercial",
            },
        )
        assert commercial.status_code == 400 and commercial.json()["errorcode"] == 109123
        no_asset = c.post(
            DEFS,
            json={**body, "definitionKey": "x", "name": "X", "content": {"customerKey": "nope"}},
        )
        assert no_asset.status_code == 400
        assert c.get(f"{DEFS}/welcome").json()["classification"] == "Default Transactional"
        assert c.get(f"{DEFS}/missing").status_code == 404
        assert (
            c.patch(f"{DEFS}/welcome", json={"status": "inactive"}).json()["status"] == "Inactive"
        )
        gone = c.delete(f"{DEFS}/welcome")
        assert gone.json()["message"] == "Success" and gone.json()["deletedDefinitionKey"]
        assert c.post(DEFS, json=body).status_code == 201  # the key is free again


def test_a_send_is_queued_then_sent_and_a_reused_key_is_not_a_second_send(
    mc: MarketingCloudEmulator, mc_url: str
) -> None:
    key = "inv#42/retry 1"  # no character restrictions: percent-encoded as one segment
    with _client(mc_url) as c:
        first = _send(c, key, Subject="Invoice INV-42", Body="Please pay.")
        assert first.status_code == 202
        assert first.json()["errorcode"] == 0 and first.json()["responses"] == [{"messageKey": key}]
        again = _send(c, key, Subject="Invoice INV-42", Body="Please pay.")
        assert again.status_code == 202
        item = again.json()["responses"][0]
        assert item["errorcode"] == 109110 and "DuplicateMessageKey" in item["message"]
        status = c.get(f"{MSG}/{quote(key, safe='')}").json()
        assert status["eventCategoryType"] == "TransactionalSendEvents.EmailSent"
        assert status["info"] == {
            "messageKey": key,
            "contactKey": "ap@acme.test",
            "to": "ap@acme.test",
        }
        assert c.get(f"{MSG}/unknown").status_code == 404
    [msg] = mc.inbox()
    assert (msg["subject"], msg["body"], msg["delivery"]) == ("Invoice INV-42", "Please pay.", 1)
    # the window over (2 days), the same key is a new message
    mc.clock_offset += 2 * 86400 + 1
    with _client(mc_url) as c:
        assert _send(c, key).json()["errorcode"] == 0
    assert [m["delivery"] for m in mc.inbox()] == [1, 2]


def test_singleton_duplicate_status_is_configurable(
    mc: MarketingCloudEmulator, mc_url: str
) -> None:
    mc.duplicate_status = 400
    with _client(mc_url) as c:
        assert _send(c, "k1").status_code == 202
        dup = _send(c, "k1")
        assert dup.status_code == 400 and dup.json()["errorcode"] == 109110
    assert len(mc.inbox()) == 1


def test_validation_errors_carry_the_tm_codes(mc: MarketingCloudEmulator, mc_url: str) -> None:
    with _client(mc_url) as c:
        assert _send(c, "k-bad", to="not-an-address").json()["errorcode"] == 109121
        assert _send(c, "x" * 101).json()["errorcode"] == 109108
        missing = c.post(
            f"{MSG}/k2",
            json={"definitionKey": "nope", "recipient": {"contactKey": "a", "to": "a@b.co"}},
        )
        assert missing.status_code == 400 and missing.json()["errorcode"] == 109111
        no_to = c.post(
            f"{MSG}/k3",
            json={"definitionKey": "revbridge-dunning", "recipient": {"contactKey": "a"}},
        )
        assert no_to.json()["errorcode"] == 109106
        assert c.post(f"{MSG}/k4", content=b"{").status_code == 400
    assert mc.inbox() == []


def test_held_contacts_are_not_sent_and_an_inactive_definition_queues(
    mc: MarketingCloudEmulator, mc_url: str
) -> None:
    mc.seed({"contacts": {"held@acme.test": "Held"}})
    with _client(mc_url) as c:
        _send(c, "k-held", to="held@acme.test")
        st = c.get(f"{MSG}/k-held").json()
        assert st["eventCategoryType"] == "TransactionalSendEvents.EmailNotSent"
        assert (st["info"]["statusCode"], st["info"]["statusMessage"]) == (2, "Held")
        c.patch(f"{DEFS}/revbridge-dunning", json={"status": "Inactive"})
        _send(c, "k-queued")
        st = c.get(f"{MSG}/k-queued").json()
        assert st["eventCategoryType"] == "TransactionalSendEvents.EmailQueued"
        assert set(st) == {"requestId", "eventCategoryType", "timestamp"}
        assert c.get(f"{DEFS}/revbridge-dunning/queue").json()["count"] == 1


def test_batch_partial_failure_is_a_202_with_item_errors(
    mc: MarketingCloudEmulator, mc_url: str
) -> None:
    with _client(mc_url) as c:
        resp = c.post(
            f"{MSG}/",
            json={
                "definitionKey": "revbridge-dunning",
                "recipients": [
                    {"contactKey": "a", "to": "a@acme.test"},
                    {"contactKey": "b"},
                    {"contactKey": "c", "to": "c@acme.test", "messageKey": "same"},
                    {"contactKey": "d", "to": "d@acme.test", "messageKey": "same"},
                ],
            },
        )
    assert resp.status_code == 202
    data = resp.json()
    assert (
        data["errorcode"] == 109001 and "2 subscribers failed to queue out of 4" in data["message"]
    )
    codes = [r.get("errorcode") for r in data["responses"]]
    assert codes == [None, 109106, None, 109110]
    assert len(data["responses"][0]["messageKey"]) == 22
    assert len(mc.inbox()) == 2


def test_rate_limits_answer_429_with_retry_after(mc: MarketingCloudEmulator, mc_url: str) -> None:
    mc.status_limit_per_minute = 2
    with _client(mc_url) as c:
        _send(c, "k-rl")
        assert c.get(f"{MSG}/k-rl").status_code == 200
        assert c.get(f"{MSG}/k-rl").status_code == 200
        limited = c.get(f"{MSG}/k-rl")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "5"
        assert limited.json()["errorcode"] == 50100 and limited.json()["retryAfter"] == 5
        mc.blocked = True
        blocked = c.get(DEFS)
        assert blocked.status_code == 429 and "retry-after" not in blocked.headers
        assert blocked.json()["errorcode"] == 50200


def test_deliveries_are_readable_like_the_mailbox(mc: MarketingCloudEmulator, mc_url: str) -> None:
    with _client(mc_url) as c:
        _send(c, "k-box", Subject="Hello", Body="Body text")
    rows = httpx.get(f"{mc_url}/_sandbox/marketing_cloud/messages").json()["messages"]
    assert [(r["message_key"], r["subject"], r["status"]) for r in rows] == [
        ("k-box", "Hello", "TransactionalSendEvents.EmailSent")
    ]
    assert httpx.delete(f"{mc_url}/_sandbox/marketing_cloud/messages").json() == {"deleted": True}
    assert mc.inbox() == []

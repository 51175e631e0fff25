"""Salesforce through ``simple-salesforce``, authenticated with OAuth 2.0 server-to-server flows.

We fetch the token ourselves (client credentials, or JWT bearer) from a configurable token
endpoint, then hand ``instance_url`` + token to simple-salesforce: the same code path works against
a real org and the local sandbox. On ``INVALID_SESSION_ID`` we fetch a new token and retry once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import httpx
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connectors.base import ConnectorError, ErrorKind, NotFound
from domain.audit import AuditEntry
from domain.models import CaseDraft, CaseRef, CaseSummary, CrmAccount, CustomerTier, TaskDraft
from domain.settings import SalesforceSettings

VENDOR = "salesforce"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Salesforce error codes that a retry can fix.
_RETRYABLE_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION"}


class _Transport(HTTPAdapter):
    """Gives every call a timeout (simple-salesforce sets none) and, for a loopback sandbox only,
    speaks plain HTTP where simple-salesforce insists on https (crm-llm-apis.md §1.1)."""

    def __init__(self, timeout_s: float, plain_http: bool) -> None:
        super().__init__(max_retries=0)
        self.timeout_s = timeout_s
        self.plain_http = plain_http

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.plain_http and request.url and request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://") :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().send(request, **kwargs)


class SalesforceCrm:
    name = VENDOR

    def __init__(self, settings: SalesforceSettings, timeout_s: float = 20.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        token_url = urlparse(settings.token_url)
        if token_url.scheme != "https" and token_url.hostname not in _LOOPBACK:
            raise ConnectorError(
                VENDOR, ErrorKind.PERMANENT, "token URL must be https outside loopback"
            )
        self._lock = threading.Lock()
        self._sf: Salesforce | None = None

    # --- auth ---------------------------------------------------------------------------------------

    def _token_request(self) -> dict[str, str]:
        s = self._settings
        if s.auth_flow == "client_credentials":
            if s.client_secret is None:
                raise ConnectorError(
                    VENDOR, ErrorKind.PERMANENT, "SALESFORCE_CLIENT_SECRET is not set"
                )
            return {
                "grant_type": "client_credentials",
                "client_id": s.client_id,
                "client_secret": s.client_secret.get_secret_value(),
            }
        if s.auth_flow == "jwt_bearer":
            import jwt  # PyJWT, a simple-salesforce dependency

            if not (s.private_key_file and s.username):
                raise ConnectorError(
                    VENDOR,
                    ErrorKind.PERMANENT,
                    "JWT bearer needs SALESFORCE_USERNAME and SALESFORCE_PRIVATE_KEY_FILE",
                )
            with open(s.private_key_file, "rb") as fh:
                key = fh.read()
            claims = {
                "iss": s.client_id,
                "sub": s.username,
                "aud": s.audience,
                "exp": int(time.time()) + 180,
            }
            return {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": jwt.encode(claims, key, algorithm="RS256"),
            }
        raise ConnectorError(VENDOR, ErrorKind.PERMANENT, f"unknown auth flow {s.auth_flow!r}")

    def _login(self) -> Salesforce:
        try:
            resp = httpx.post(
                self._settings.token_url, data=self._token_request(), timeout=self._timeout_s
            )
        except httpx.HTTPError as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"token endpoint: {type(exc).__name__}"
            ) from None
        if resp.status_code >= 500:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, "token endpoint unavailable", status=resp.status_code
            )
        if resp.status_code != 200:
            try:
                err = resp.json().get("error", "error")
            except ValueError:
                err = "error"
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"OAuth token refused: {err}",
                status=resp.status_code,
                code=err,
            )
        token = resp.json()
        instance = urlparse(token["instance_url"])
        session = requests.Session()
        plain = (
            urlparse(self._settings.token_url).scheme == "http" and instance.hostname in _LOOPBACK
        )
        session.mount("https://", _Transport(self._timeout_s, plain_http=plain))
        session.mount("http://", _Transport(self._timeout_s, plain_http=False))
        return Salesforce(
            instance_url=token["instance_url"],
            session_id=token["access_token"],
            version=self._settings.api_version,
            session=session,
        )

    def _client(self, refresh: bool = False) -> Salesforce:
        with self._lock:
            if self._sf is None or refresh:
                self._sf = self._login()
            return self._sf

    def _call(self, fn: Callable[[Salesforce], Any], what: str) -> Any:
        for attempt in (1, 2):
            try:
                return fn(self._client(refresh=attempt == 2))
            except SalesforceExpiredSession:
                if attempt == 2:
                    raise ConnectorError(
                        VENDOR, ErrorKind.RETRYABLE, "session expired twice"
                    ) from None
            except SalesforceResourceNotFound:
                raise NotFound(VENDOR, what) from None
            except SalesforceError as exc:
                raise _classify(exc) from None
            except requests.Timeout:
                raise ConnectorError(VENDOR, ErrorKind.RETRYABLE, "timeout") from None
            except requests.RequestException as exc:
                raise ConnectorError(
                    VENDOR, ErrorKind.RETRYABLE, f"network: {type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")

    def query(self, soql: str) -> list[dict[str, Any]]:
        """All records of a SOQL query (follows nextRecordsUrl)."""
        return self._call(lambda sf: sf.query_all(soql), what="query")["records"]

    def audit_log(self, workflow_id: str) -> list[dict[str, Any]]:
        """The audit entries one workflow wrote, oldest first, in vendor-neutral keys."""
        rows = self.query(
            format_soql(
                "SELECT Id, Action__c, Outcome__c, Case__c, Account__c, Details__c "
                "FROM AI_Agent_Log__c WHERE Workflow_Id__c = {} ORDER BY CreatedDate",
                workflow_id,
            )
        )
        return [
            {
                "id": r["Id"],
                "action": r["Action__c"],
                "outcome": r["Outcome__c"],
                "case_id": r["Case__c"],
                "account_id": r["Account__c"],
                "text": r["Details__c"],
            }
            for r in rows
        ]

    @property
    def api_usage(self) -> dict[str, Any]:
        return dict(self._sf.api_usage) if self._sf else {}

    # --- CrmSystem ------------------------------------------------------------------------------------

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None:
        soql = format_soql(
            "SELECT Id, Name, Customer_Tier__c, OwnerId FROM Account "
            "WHERE Billing_Customer_Id__c = {} AND Billing_Platform__c = {} LIMIT 1",
            customer_id,
            billing,
        )
        rows = self._call(lambda sf: sf.query(soql), what="account")["records"]
        if not rows:
            return None
        row = rows[0]
        tier = row.get("Customer_Tier__c")
        return CrmAccount(
            id=row["Id"],
            name=row["Name"],
            tier=CustomerTier(tier)
            if tier in CustomerTier._value2member_map_
            else CustomerTier.SMB,
            owner_id=row.get("OwnerId"),
        )

    def open_cases(self, account_id: str, limit: int = 5) -> list[CaseSummary]:
        rows = self.query(
            format_soql(
                "SELECT Id, Subject, Description FROM Case WHERE AccountId = {} "
                "AND IsClosed = false ORDER BY CreatedDate DESC LIMIT {:literal}",
                account_id,
                str(int(limit)),
            )
        )
        return [
            CaseSummary(
                id=r["Id"], subject=r.get("Subject") or "", description=r.get("Description") or ""
            )
            for r in rows
        ]

    def upsert_case(self, draft: CaseDraft) -> CaseRef:
        fields = {
            "Subject": draft.subject[:255],
            "Description": draft.description,
            "Priority": draft.priority.value,
            "Status": "New",
            "Origin": "Web",
            "Type": "Billing",
            "Billing_Invoice_Id__c": draft.invoice_id,
        }
        if draft.account_id:
            fields["AccountId"] = draft.account_id
        resp = self._call(
            lambda sf: sf.Case.upsert(f"RevBridge_Key__c/{draft.key}", fields, raw_response=True),
            what="case",
        )
        created = resp.status_code == 201
        case = self._call(
            lambda sf: sf.Case.get_by_custom_id("RevBridge_Key__c", draft.key), what="case"
        )
        return CaseRef(id=case["Id"], number=case.get("CaseNumber"), created=created)

    def upsert_task(self, draft: TaskDraft) -> str:
        fields: dict[str, Any] = {
            "Subject": draft.subject[:255],
            "Description": draft.description,
            "Status": "Not Started",
            "Priority": "High" if draft.high_priority else "Normal",
        }
        if draft.account_id:
            fields["WhatId"] = draft.account_id
        if draft.due:
            fields["ActivityDate"] = draft.due.date().isoformat()
        self._call(lambda sf: sf.Task.upsert(f"RevBridge_Key__c/{draft.key}", fields), what="task")
        row = self._call(
            lambda sf: sf.Task.get_by_custom_id("RevBridge_Key__c", draft.key), what="task"
        )
        return row["Id"]

    def write_audit(self, entry: AuditEntry) -> str:
        fields = {
            "Use_Case__c": entry.use_case,
            "Action__c": entry.action,
            "Decision__c": entry.decision,
            "Policy_Ids__c": ",".join(entry.policy_ids) or None,
            "Approver__c": entry.approver,
            "Reasoner__c": entry.reasoner + (f"/{entry.model}" if entry.model else ""),
            "Outcome__c": entry.outcome,
            "Parameters_Hash__c": entry.parameters_hash,
            "Workflow_Id__c": entry.workflow_id,
            "Run_Id__c": entry.run_id,
            "Details__c": entry.as_text(),
        }
        if entry.account_id:
            fields["Account__c"] = entry.account_id
        if entry.case_id:
            fields["Case__c"] = entry.case_id
        resp = self._call(
            lambda sf: sf.AI_Agent_Log__c.upsert(
                f"RevBridge_Key__c/{entry.key}", fields, raw_response=True
            ),
            what="audit log",
        )
        if resp.status_code in (200, 201) and resp.content:
            return resp.json()["id"]
        row = self._call(
            lambda sf: sf.AI_Agent_Log__c.get_by_custom_id("RevBridge_Key__c", entry.key),
            what="audit log",
        )
        return row["Id"]


def _classify(exc: SalesforceError) -> ConnectorError:
    content = exc.content if isinstance(exc.content, list) else []
    code = content[0].get("errorCode") if content and isinstance(content[0], dict) else None
    status = getattr(exc, "status", None)
    if isinstance(exc, SalesforceRefusedRequest) and code == "REQUEST_LIMIT_EXCEEDED":
        # The daily allocation is exhausted: no Retry-After from Salesforce; back off for long.
        return ConnectorError(
            VENDOR,
            ErrorKind.RATE_LIMITED,
            "API allocation exhausted",
            status=status,
            code=code,
            retry_after=300.0,
        )
    if code in _RETRYABLE_CODES or (status is not None and status >= 500):
        return ConnectorError(
            VENDOR, ErrorKind.RETRYABLE, f"{code or status}", status=status, code=code
        )
    if isinstance(exc, SalesforceMalformedRequest | SalesforceRefusedRequest) or (
        status and 400 <= status < 500
    ):
        return ConnectorError(
            VENDOR, ErrorKind.PERMANENT, f"{code or status}", status=status, code=code
        )
    return ConnectorError(
        VENDOR, ErrorKind.RETRYABLE, f"{code or status}", status=status, code=code
    )

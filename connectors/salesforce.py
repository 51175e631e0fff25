"""Salesforce through ``simple-salesforce``, authenticated with OAuth 2.0 server-to-server flows.

We fetch the token ourselves (client credentials, or JWT bearer) from a configurable token
endpoint, then hand ``instance_url`` + token to simple-salesforce: the same code path works against
a real org and the local sandbox. On ``INVALID_SESSION_ID`` we fetch a new token and retry once.

The fields RevBridge needs on the org (``NEEDS``) are in connectors/salesforce_fields.py: this
connector cuts text to them and ``preflight`` checks the org against them. ``revbridge setup crm``
(Tooling API creates, the permission set) is connectors/salesforce_setup.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlparse

import httpx
import requests
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connectors import limits
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.salesforce_fields import ACCESS_FIX, NEEDS, VENDOR, object_checks
from connectors.timeouts import call_timeout
from domain.audit import AuditEntry
from domain.churn import ScoredAccount
from domain.models import (
    CaseDraft,
    CaseRef,
    CaseSummary,
    CrmAccount,
    CustomerTier,
    TaskDraft,
)
from domain.preflight import Check, CheckStatus
from domain.records import (
    BillingLink,
    CaseDetail,
    ChurnScoreRecord,
    Contact,
    Opportunity,
    OpportunityLine,
)
from domain.settings import SalesforceSettings

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Salesforce error codes that a retry can fix.
_RETRYABLE_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION"}
# Error codes that mean "no such record" (a bad or deleted ID in a filter or a collection item).
_MISSING_CODES = {
    "NOT_FOUND",
    "ENTITY_IS_DELETED",
    "INVALID_CROSS_REFERENCE_KEY",
    "INVALID_QUERY_FILTER_OPERATOR",
    "MALFORMED_ID",
}
_ACCOUNT_FIELDS = "Id, Name, Customer_Tier__c, OwnerId, Billing_Customer_Id__c, Billing_Platform__c"
_CASE_FIELDS = "Id, Subject, Description, CreatedDate"
_IN_CHUNK = 200  # IDs per SOQL IN (well under the 100,000-character SOQL limit)


#: daily API allowance left below which preflight warns
ALLOWANCE_WARN = 0.20


def _fit(obj: str, field: str, text: str | None) -> str | None:
    """``text`` cut to the field's length in :data:`NEEDS`."""
    need = NEEDS[obj][field]
    return fit(text, need.length, marker=need.type == "textarea")


def fit(text: str | None, limit: int, marker: bool = True) -> str | None:
    """``text`` within ``limit`` characters. A long text area keeps its head (an audit text
    starts with what happened and the correlation ID) and ends with a line naming the original
    length; a one-line field just ends with an ellipsis."""
    if text is None or len(text) <= limit:
        return text
    if not marker:
        return text[: limit - 1] + "…"
    note = f"\n…[truncated by RevBridge: {len(text)} characters in all]"
    return text[: limit - len(note)] + note


class _Transport(limits.PacedAdapter):
    """Gives every call a timeout (simple-salesforce sets none), paces it and reads
    ``Sforce-Limit-Info`` (connectors/limits.py) and, for a loopback sandbox only, speaks plain
    HTTP where simple-salesforce insists on https (crm-llm-apis.md §1.1)."""

    def __init__(self, timeout_s: float, plain_http: bool) -> None:
        super().__init__(VENDOR, timeout_s)
        self.plain_http = plain_http

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.plain_http and request.url and request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://") :]
        return super().send(request, **kwargs)


class SalesforceCrm:
    name = VENDOR

    def __init__(self, settings: SalesforceSettings, timeout_s: float = 20.0) -> None:
        self._settings = settings
        # below the activity's start-to-close (connectors/timeouts.py)
        self._timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        token_url = urlparse(settings.token_url)
        if token_url.scheme != "https" and token_url.hostname not in _LOOPBACK:
            raise ConnectorError(
                VENDOR, ErrorKind.PERMANENT, "token URL must be https outside loopback"
            )
        self._lock = threading.Lock()
        self._sf: Salesforce | None = None
        self._identity = ""

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
        #: the identity URL (``…/id/<org>/<user>``): whose session this is (setup assigns to it)
        self._identity = str(token.get("id") or "")
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

    def _call_record(self, fn: Callable[[Salesforce], Any], what: str) -> Any:
        """``_call`` for one named record: a malformed, unknown or deleted ID is NotFound."""
        try:
            return self._call(fn, what)
        except ConnectorError as exc:
            if exc.code in _MISSING_CODES:
                raise NotFound(VENDOR, what, status=exc.status) from None
            raise

    def _one(self, soql: str, what: str) -> dict[str, Any]:
        rows = self._call_record(lambda sf: sf.query(soql), what)["records"]
        if not rows:
            raise NotFound(VENDOR, what)
        return rows[0]

    @property
    def client(self) -> Salesforce:
        """The authenticated simple-salesforce client (scenario drivers, tests)."""
        return self._client()

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
            "SELECT {:literal} FROM Account "
            "WHERE Billing_Customer_Id__c = {} AND Billing_Platform__c = {} LIMIT 1",
            _ACCOUNT_FIELDS,
            customer_id,
            billing,
        )
        rows = self._call(lambda sf: sf.query(soql), what="account")["records"]
        return _account(rows[0]) if rows else None

    def open_cases(self, account_id: str, limit: int = 5) -> list[CaseSummary]:
        rows = self.query(
            format_soql(
                "SELECT {:literal} FROM Case WHERE AccountId = {} "
                "AND IsClosed = false ORDER BY CreatedDate DESC LIMIT {:literal}",
                _CASE_FIELDS,
                account_id,
                str(int(limit)),
            )
        )
        return [_case_summary(r) for r in rows]

    def find_account_with_cases(
        self, billing: str, customer_id: str, limit: int = 5
    ) -> tuple[CrmAccount | None, list[CaseSummary]]:
        """One SOQL: the account and, in a parent-to-child subquery on ``Cases``, its newest
        open cases (Salesforce answers ``"Cases": null`` when there are none)."""
        soql = format_soql(
            "SELECT {:literal}, (SELECT {:literal} FROM Cases WHERE IsClosed = false "
            "ORDER BY CreatedDate DESC LIMIT {:literal}) FROM Account "
            "WHERE Billing_Customer_Id__c = {} AND Billing_Platform__c = {} LIMIT 1",
            _ACCOUNT_FIELDS,
            _CASE_FIELDS,
            str(max(1, int(limit))),
            customer_id,
            billing,
        )
        rows = self._call(lambda sf: sf.query(soql), what="account")["records"]
        if not rows:
            return None, []
        cases = [_case_summary(r) for r in self._children(rows[0], "Cases")]
        return _account(rows[0]), cases[: max(0, int(limit))]

    def find_accounts_with_cases(
        self, billing: str, customer_ids: list[str], limit: int = 5
    ) -> dict[str, tuple[CrmAccount, list[CaseSummary]]]:
        """A page of customers at once (the churn sweep): one SOQL per 200 IDs, ``IN`` with the
        same Cases subquery, keyed by billing customer ID; customers with no account are
        absent. Each account carries its stored ``Churn_Risk__c`` / ``Churn_Level__c``, so the
        sweep writes back only the scores that moved."""
        out: dict[str, tuple[CrmAccount, list[CaseSummary]]] = {}
        ids = list(dict.fromkeys(customer_ids))
        for start in range(0, len(ids), _IN_CHUNK):
            soql = format_soql(
                "SELECT {:literal}, (SELECT {:literal} FROM Cases WHERE IsClosed = false "
                "ORDER BY CreatedDate DESC LIMIT {:literal}) FROM Account "
                "WHERE Billing_Customer_Id__c IN {} AND Billing_Platform__c = {}",
                _ACCOUNT_FIELDS + ", Churn_Risk__c, Churn_Level__c",
                _CASE_FIELDS,
                str(max(1, int(limit))),
                ids[start : start + _IN_CHUNK],
                billing,
            )
            for row in self.query(soql):
                cases = [_case_summary(r) for r in self._children(row, "Cases")]
                found = _scored_account(row)
                if found.billing_customer_id is not None:
                    out[found.billing_customer_id] = (found, cases[: max(0, int(limit))])
        return out

    def upsert_case(self, draft: CaseDraft, audit: AuditEntry | None = None) -> CaseRef:
        """One ``/composite`` request with ``allOrNone``: the case upsert by its external ID,
        its case number read through ``@{case.id}``, and (with ``audit``) the audit entry upsert
        by its own key, pointing at ``@{case.id}``. One API call and no re-read; a retry updates
        the same keyed records, so it still opens one case and writes one audit row."""
        fields: dict[str, Any] = {
            "Subject": _fit("Case", "Subject", draft.subject),
            "Description": _fit("Case", "Description", draft.description),
            "Priority": draft.priority.value,
            "Status": "New",
            "Origin": "Web",
            "Type": "Billing",
            "Billing_Invoice_Id__c": _fit("Case", "Billing_Invoice_Id__c", draft.invoice_id),
        }
        if draft.account_id:
            fields["AccountId"] = draft.account_id
        base = f"/services/data/v{self._settings.api_version}/sobjects"
        subrequests: list[dict[str, Any]] = [
            {
                "method": "PATCH",
                "url": f"{base}/Case/RevBridge_Key__c/{quote(draft.key, safe='')}",
                "referenceId": "case",
                "body": fields,
            },
            {
                "method": "GET",
                "url": f"{base}/Case/@{{case.id}}?fields=CaseNumber",
                "referenceId": "caseNumber",
            },
        ]
        if audit is not None:
            entry = _audit_fields(audit)
            entry.setdefault("Case__c", "@{case.id}")
            if draft.account_id:
                entry.setdefault("Account__c", draft.account_id)
            subrequests.append(
                {
                    "method": "PATCH",
                    "url": f"{base}/AI_Agent_Log__c/RevBridge_Key__c/{quote(audit.key, safe='')}",
                    "referenceId": "audit",
                    "body": entry,
                }
            )
        answer = self._call(
            lambda sf: sf.restful(
                "composite",
                method="POST",
                json={"allOrNone": True, "compositeRequest": subrequests},
            ),
            what="case",
        )
        results = _composite_results(answer, "case")
        case, number = results["case"], results["caseNumber"]
        return CaseRef(
            id=case["body"]["id"],
            number=(number.get("body") or {}).get("CaseNumber"),
            created=case["httpStatusCode"] == 201,
        )

    def upsert_task(self, draft: TaskDraft, audit: AuditEntry | None = None) -> str:
        """Open (or find again) the task by its key; with ``audit``, the audit entry goes in the
        same ``/composite`` request (allOrNone, both keyed: a retry writes nothing new)."""
        fields: dict[str, Any] = {
            "Subject": _fit("Task", "Subject", draft.subject),
            "Description": _fit("Task", "Description", draft.description),
            "Status": "Not Started",
            "Priority": "High" if draft.high_priority else "Normal",
        }
        if draft.account_id:
            fields["WhatId"] = draft.account_id
        if draft.due:
            fields["ActivityDate"] = draft.due.date().isoformat()
        if draft.owner_id:
            fields["OwnerId"] = draft.owner_id  # the account owner, not the integration user
        if audit is not None:
            base = f"/services/data/v{self._settings.api_version}/sobjects"
            subrequests = [
                {
                    "method": "PATCH",
                    "url": f"{base}/Task/RevBridge_Key__c/{quote(draft.key, safe='')}",
                    "referenceId": "task",
                    "body": fields,
                },
                {
                    "method": "PATCH",
                    "url": f"{base}/AI_Agent_Log__c/RevBridge_Key__c/{quote(audit.key, safe='')}",
                    "referenceId": "audit",
                    "body": _audit_fields(audit),
                },
            ]
            answer = self._call(
                lambda sf: sf.restful(
                    "composite",
                    method="POST",
                    json={"allOrNone": True, "compositeRequest": subrequests},
                ),
                what="task",
            )
            return _composite_results(answer, "task")["task"]["body"]["id"]
        resp = self._call(
            lambda sf: sf.Task.upsert(f"RevBridge_Key__c/{draft.key}", fields, raw_response=True),
            what="task",
        )
        if resp.status_code in (200, 201) and resp.content:
            return resp.json()["id"]  # API 46.0+: the upsert answers with the ID, no re-read
        row = self._call(
            lambda sf: sf.Task.get_by_custom_id("RevBridge_Key__c", draft.key), what="task"
        )
        return row["Id"]

    def write_audit(self, entry: AuditEntry) -> str:
        fields = _audit_fields(entry)
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

    # --- preflight (revbridge doctor) ------------------------------------------------------------

    def preflight(self) -> list[Check]:
        """Checks a real org before go-live, in two API calls at most: the OAuth token, then one
        ``/composite`` of ``sobjects/<X>/describe`` for every object RevBridge uses (describe
        answers for the integration user: fields it cannot see are absent, objects it may not
        create say ``createable: false``). The allowance comes from that answer's
        ``Sforce-Limit-Info``. One line per object, per problem, and for the allowance."""
        try:
            self._client(refresh=True)
        except ConnectorError as exc:
            return [
                _check("credentials", CheckStatus.FAIL, _reason(exc), _CREDENTIALS_FIX),
                _check("org", CheckStatus.SKIP, "not checked without credentials"),
            ]
        checks = [_check("credentials", CheckStatus.OK, f"token from {self._token_host()}")]
        objects = list(NEEDS)
        base = f"/services/data/v{self._settings.api_version}/sobjects"
        subrequests = [
            {"method": "GET", "url": f"{base}/{obj}/describe", "referenceId": f"d{i}"}
            for i, obj in enumerate(objects)
        ]
        try:
            answer = self._call(
                lambda sf: sf.restful(
                    "composite",
                    method="POST",
                    json={"allOrNone": False, "compositeRequest": subrequests},
                ),
                what="describe",
            )
        except ConnectorError as exc:
            if exc.code == "REQUEST_LIMIT_EXCEEDED":
                checks.append(_check("api-allowance", CheckStatus.FAIL, "spent", _ALLOWANCE_FIX))
            else:
                checks.append(_check("describe", CheckStatus.FAIL, _reason(exc), ACCESS_FIX))
            return checks
        results = (answer.get("compositeResponse") if isinstance(answer, dict) else None) or []
        for obj, result in zip(objects, results, strict=False):
            checks.extend(object_checks(obj, result))
        checks.append(self._allowance_check())
        return checks

    def _token_host(self) -> str:
        return urlparse(self._settings.token_url).hostname or "?"

    def _allowance_check(self) -> Check:
        usage = self.api_usage.get("api-usage")
        if usage is None:
            limits = self._call(lambda sf: sf.limits(), what="limits")["DailyApiRequests"]
            total, left = int(limits["Max"]), int(limits["Remaining"])
        else:
            total, left = int(usage.total), max(0, int(usage.total) - int(usage.used))
        detail = f"{left} of {total} daily API requests left"
        if total <= 0 or left <= 0:
            return _check("api-allowance", CheckStatus.FAIL, detail, _ALLOWANCE_FIX)
        if left < ALLOWANCE_WARN * total:
            return _check("api-allowance", CheckStatus.WARN, detail, _ALLOWANCE_FIX)
        return _check("api-allowance", CheckStatus.OK, detail)

    # --- quote-to-cash ---------------------------------------------------------------------------

    def get_opportunity(self, opportunity_id: str) -> Opportunity:
        """One query: the opportunity, its account (child-to-parent) and its line items and
        contact roles (parent-to-child subqueries)."""
        account = ", ".join(f"Account.{f.strip()}" for f in _ACCOUNT_FIELDS.split(","))
        soql = format_soql(
            "SELECT Id, Name, StageName, IsWon, Amount, CloseDate, Start_Date__c, "
            "Term_Months__c, Payment_Terms__c, Billing_Subscription_Id__c, AccountId, {:literal}, "
            "(SELECT Id, Name, ProductCode, Product2.ProductCode, Product2.Name, Quantity, "
            "UnitPrice, ListPrice, Discount FROM OpportunityLineItems "
            "ORDER BY SortOrder, CreatedDate, Id), "
            "(SELECT ContactId, Contact.Name, Contact.Email, IsPrimary "
            "FROM OpportunityContactRoles ORDER BY IsPrimary DESC, CreatedDate, Id) "
            "FROM Opportunity WHERE Id = {}",
            account,
            opportunity_id,
        )
        row = self._one(soql, "opportunity")
        lines = [_line(r) for r in self._children(row, "OpportunityLineItems")]
        contacts: dict[str, Contact] = {}
        for r in self._children(row, "OpportunityContactRoles"):
            person = r.get("Contact") or {}
            contacts.setdefault(
                r["ContactId"],
                Contact(
                    id=r["ContactId"], name=person.get("Name") or "", email=person.get("Email")
                ),
            )
        if not contacts and row.get("AccountId"):
            # No contact roles on the deal: fall back to the account's oldest contacts.
            for r in self.query(
                format_soql(
                    "SELECT Id, Name, Email FROM Contact WHERE AccountId = {} "
                    "ORDER BY CreatedDate, Id LIMIT 5",
                    row["AccountId"],
                )
            ):
                contacts[r["Id"]] = Contact(
                    id=r["Id"], name=r.get("Name") or "", email=r.get("Email")
                )
        close_date = _date(row.get("CloseDate"))
        # A single-currency org has no CurrencyIsoCode field: the record's default (USD) holds.
        # Lines are priced per month (the catalogue's unit), hence the default billing period.
        return Opportunity(
            id=row["Id"],
            name=row.get("Name") or "",
            stage=row.get("StageName") or "",
            won=bool(row.get("IsWon")),
            account=_account(row["Account"]) if row.get("Account") else None,
            contacts=list(contacts.values()),
            lines=lines,
            amount=_cents(row.get("Amount")),
            close_date=close_date,
            start_date=_date(row.get("Start_Date__c")) or close_date,
            term_months=int(row.get("Term_Months__c") or 12),
            payment_terms=row.get("Payment_Terms__c"),
            billing_subscription_id=row.get("Billing_Subscription_Id__c"),
        )

    def _children(self, row: dict[str, Any], relationship: str) -> list[dict[str, Any]]:
        """A parent-to-child subquery's records (``null`` when empty), following its
        ``nextRecordsUrl`` when Salesforce pages a large one."""
        page = row.get(relationship)
        out: list[dict[str, Any]] = []
        while page:
            out.extend(page.get("records") or [])
            url = None if page.get("done", True) else page.get("nextRecordsUrl")
            page = (
                self._call(
                    lambda sf, url=url: sf.query_more(url, identifier_is_url=True), relationship
                )
                if url
                else None
            )
        return out

    def won_opportunities(self, since: datetime, limit: int = 200) -> list[str]:
        # format_soql writes whole seconds (Salesforce keeps no more), so ``>=`` floors ``since``
        # to its second: a catch-up may see one record twice, never miss one.
        soql = format_soql(
            "SELECT Id FROM Opportunity WHERE IsWon = true AND LastModifiedDate >= {} "
            "ORDER BY LastModifiedDate, Id LIMIT {:literal}",
            _utc(since),
            str(max(1, min(int(limit), 2000))),
        )
        return [r["Id"] for r in self.query(soql)]

    def write_billing_link(self, link: BillingLink) -> None:
        """Both records in one sObject Collections PATCH with ``allOrNone``: the account and
        the opportunity never disagree about the link."""
        linked = link.subscription_id is not None
        mrr = round(link.mrr / 100, 2) if linked else None
        status = _fit("Account", "Billing_Status__c", link.status)
        records = [
            {
                "attributes": {"type": "Account"},
                "id": link.account_id,
                "Billing_Customer_Id__c": link.customer_id,
                "Billing_Platform__c": link.billing if link.customer_id else None,
                "Billing_Subscription_Id__c": link.subscription_id,
                "MRR__c": mrr,
                "Billing_Status__c": status,
            },
            {
                "attributes": {"type": "Opportunity"},
                "id": link.opportunity_id,
                "Billing_Subscription_Id__c": link.subscription_id,
                "MRR__c": mrr,
                "Billing_Status__c": status,
            },
        ]
        results = self._call(
            lambda sf: sf.restful(
                "composite/sobjects",
                method="PATCH",
                json={"allOrNone": True, "records": records},
            ),
            what="billing link",
        )
        _check_save_results(results, "billing link")

    # --- churn and support context ---------------------------------------------------------------

    def get_account(self, account_id: str) -> CrmAccount:
        row = self._one(
            format_soql(
                "SELECT {:literal} FROM Account WHERE Id = {}", _ACCOUNT_FIELDS, account_id
            ),
            "account",
        )
        return _account(row)

    def write_churn_score(self, record: ChurnScoreRecord) -> None:
        fields = _churn_fields(record)
        self._call_record(lambda sf: sf.Account.update(record.account_id, fields), "account")

    def write_churn_scores(self, records: list[ChurnScoreRecord]) -> dict[str, str]:
        """A page of scores in one sObject Collections PATCH per 200 accounts (the sweep's one
        write per page), each account on its own (``allOrNone: false``: a deleted account does
        not hold back the others). Field sets, so a retry is idempotent. Returns the accounts
        that failed, with Salesforce's error code."""
        failed: dict[str, str] = {}
        for start in range(0, len(records), _IN_CHUNK):
            chunk = records[start : start + _IN_CHUNK]
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": "Account"}, "id": r.account_id, **_churn_fields(r)}
                    for r in chunk
                ],
            }
            results = self._call(
                lambda sf, body=body: sf.restful("composite/sobjects", method="PATCH", json=body),
                what="churn scores",
            )
            for record, result in zip(chunk, results or [], strict=False):
                if not result.get("success"):
                    errors = result.get("errors") or [{}]
                    failed[record.account_id] = str(errors[0].get("statusCode") or "UNKNOWN")
        return failed

    def get_case(self, case_id: str) -> CaseDetail:
        row = self._one(
            format_soql(
                "SELECT Id, CaseNumber, AccountId, Subject, Status, CreatedDate FROM Case "
                "WHERE Id = {}",
                case_id,
            ),
            "case",
        )
        return CaseDetail(
            id=row["Id"],
            number=row.get("CaseNumber"),
            account_id=row.get("AccountId"),
            subject=row.get("Subject") or "",
            status=row.get("Status") or "",
            opened_at=_datetime(row.get("CreatedDate")),
        )

    def annotate_case(self, case_id: str, text: str, idempotency_key: str) -> str:
        # A field set on the case: a retry writes the same value again, nothing new appears,
        # so the key needs no vendor-side home here (HubSpot notes do need it).
        fields = {"Billing_Context__c": _fit("Case", "Billing_Context__c", text)}
        self._call_record(lambda sf: sf.Case.update(case_id, fields), "case")
        return case_id


_CREDENTIALS_FIX = (
    "check SALESFORCE_TOKEN_URL (your My Domain), SALESFORCE_CLIENT_ID and the secret or JWT key, "
    "and that the connected app's Run As / pre-authorised user is active"
)
_ALLOWANCE_FIX = (
    "raise the org's daily API allocation (Setup > Company Information) or lower RevBridge's "
    "Salesforce rate in policies/limits.yaml"
)


def _check(name: str, status: CheckStatus, detail: str = "", fix: str = "") -> Check:
    return Check(system=VENDOR, name=name, status=status, detail=detail, fix=fix)


def _reason(exc: ConnectorError) -> str:
    return str(exc).removeprefix(f"{VENDOR}: ")


def _churn_fields(record: ChurnScoreRecord) -> dict[str, Any]:
    return {
        "Churn_Risk__c": record.score,
        "Churn_Level__c": record.level,
        "Churn_Reasons__c": _fit("Account", "Churn_Reasons__c", "\n".join(record.reasons)) or None,
        "Churn_Narrative__c": _fit("Account", "Churn_Narrative__c", record.narrative) or None,
        "Churn_Scored_At__c": _utc(record.scored_at).isoformat(timespec="seconds"),
    }


def _audit_fields(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as ``AI_Agent_Log__c`` fields, each within its length."""

    def cut(name: str, value: str | None) -> str | None:
        return _fit("AI_Agent_Log__c", name, value)

    fields: dict[str, Any] = {
        "Use_Case__c": cut("Use_Case__c", entry.use_case),
        "Action__c": cut("Action__c", entry.action),
        "Decision__c": cut("Decision__c", entry.decision),
        "Policy_Ids__c": cut("Policy_Ids__c", ",".join(entry.policy_ids)) or None,
        "Approver__c": cut("Approver__c", entry.approver),
        "Reasoner__c": cut(
            "Reasoner__c", entry.reasoner + (f"/{entry.model}" if entry.model else "")
        ),
        "Outcome__c": cut("Outcome__c", entry.outcome),
        "Parameters_Hash__c": cut("Parameters_Hash__c", entry.parameters_hash),
        "Workflow_Id__c": cut("Workflow_Id__c", entry.workflow_id),
        "Run_Id__c": cut("Run_Id__c", entry.run_id),
        "Details__c": cut("Details__c", entry.as_text()),
    }
    if entry.account_id:
        fields["Account__c"] = entry.account_id
    if entry.case_id:
        fields["Case__c"] = entry.case_id
    return fields


def _composite_results(answer: Any, what: str) -> dict[str, dict[str, Any]]:
    """A ``/composite`` answer (HTTP 200 whatever happened) by referenceId; the first real
    failure raised, classified (under ``allOrNone`` the others say ``PROCESSING_HALTED``)."""
    results = answer.get("compositeResponse") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise ConnectorError(VENDOR, ErrorKind.RETRYABLE, f"{what}: unexpected composite answer")
    failures = [r for r in results if int(r.get("httpStatusCode") or 500) >= 300]
    if not failures:
        return {r["referenceId"]: r for r in results}
    errors = [
        (r, err)
        for r in failures
        for err in (r.get("body") if isinstance(r.get("body"), list) else [{}])
        if not isinstance(err, dict) or err.get("errorCode") != "PROCESSING_HALTED"
    ] or [(failures[0], (failures[0].get("body") or [{}])[0])]
    result, err = errors[0]
    code = err.get("errorCode") if isinstance(err, dict) else None
    status = int(result.get("httpStatusCode") or 500)
    retryable = code in _RETRYABLE_CODES or status >= 500
    kind = ErrorKind.RETRYABLE if retryable else ErrorKind.PERMANENT
    return_code = code or str(status)
    raise ConnectorError(
        VENDOR,
        kind,
        f"{what}: {result.get('referenceId')}: {return_code}",
        status=status,
        code=code,
    )


def _case_summary(row: dict[str, Any]) -> CaseSummary:
    return CaseSummary(
        id=row["Id"],
        subject=row.get("Subject") or "",
        description=row.get("Description") or "",
        opened_at=_datetime(row.get("CreatedDate")),
    )


def _account(row: dict[str, Any]) -> CrmAccount:
    tier = row.get("Customer_Tier__c")
    return CrmAccount(
        id=row["Id"],
        name=row.get("Name") or "",
        tier=CustomerTier(tier) if tier in CustomerTier._value2member_map_ else CustomerTier.SMB,
        owner_id=row.get("OwnerId"),
        billing_customer_id=row.get("Billing_Customer_Id__c"),
        billing_platform=row.get("Billing_Platform__c"),
    )


def _line(row: dict[str, Any]) -> OpportunityLine:
    product = row.get("Product2") or {}
    list_price = row.get("ListPrice")
    return OpportunityLine(
        id=row["Id"],
        product_code=row.get("ProductCode") or product.get("ProductCode") or "",
        name=product.get("Name") or row.get("Name") or "",
        quantity=round(row.get("Quantity") or 0),
        unit_price=_cents(row.get("UnitPrice")),
        list_price=None if list_price is None else _cents(list_price),
        discount_percent=float(row.get("Discount") or 0),
    )


def _cents(amount: float | int | None) -> int:
    """Salesforce currency (a decimal number of major units) → integer minor units."""
    return round((amount or 0) * 100)


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _datetime(value: str | None) -> datetime | None:
    """``2024-05-01T12:00:00.000+0000`` (Salesforce's format) → an aware UTC datetime."""
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _check_save_results(results: Any, what: str) -> None:
    """sObject Collections answer 200 with one SaveResult per record; a failed record carries
    ``errors[{statusCode, message, fields}]`` and, under ``allOrNone``, the others say
    ``ALL_OR_NONE_OPERATION_ROLLED_BACK``. Raise the first real failure, classified."""
    if not isinstance(results, list):
        raise ConnectorError(VENDOR, ErrorKind.RETRYABLE, f"{what}: unexpected collection answer")
    errors = [
        err
        for r in results
        if not r.get("success")
        for err in (r.get("errors") or [{}])
        if err.get("statusCode") != "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    ]
    if not errors:
        if all(r.get("success") for r in results):
            return
        errors = [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK"}]
    code = errors[0].get("statusCode")
    if code in _MISSING_CODES:
        raise NotFound(VENDOR, what, status=None)
    kind = ErrorKind.RETRYABLE if code in _RETRYABLE_CODES else ErrorKind.PERMANENT
    raise ConnectorError(VENDOR, kind, f"{what}: {code}", code=code)


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


def _scored_account(row: dict[str, Any]) -> ScoredAccount:
    """An account row with the churn score the org stores on it (the sweep's bulk read)."""
    risk = row.get("Churn_Risk__c")
    return ScoredAccount(
        **_account(row).model_dump(),
        churn_risk=None if risk is None else round(float(risk)),
        churn_level=row.get("Churn_Level__c") or None,
    )

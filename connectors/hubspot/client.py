"""The HubSpot client as RevBridge calls it: the API groups built once, one paced call with the
call timeout, HubSpot's errors classified (rate limits with their wait), idempotent creates by
the unique ``revbridge_key``, and the reads every use case shares (by unique value, by ID in
batches, through associations)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import hubspot
import urllib3
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsApiException
from hubspot.crm.companies.exceptions import ApiException as CompaniesApiException
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.deals.exceptions import ApiException as DealsApiException
from hubspot.crm.line_items.exceptions import ApiException as LineItemsApiException
from hubspot.crm.objects.notes.exceptions import ApiException as NotesApiException
from hubspot.crm.objects.tasks.exceptions import ApiException as TasksApiException
from hubspot.crm.products.exceptions import ApiException as ProductsApiException
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hubspot.crm.tickets.exceptions import ApiException as TicketsApiException
from urllib3.util.retry import Retry

from connectors import limits
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.hubspot.values import _BATCH, KEY_PROPERTY, VENDOR
from connectors.timeouts import call_timeout
from domain.settings import HubSpotSettings

#: a read sent on a pooled connection the server closed at that moment (an idle keep-alive
#: timing out) is sent once more on a fresh one; only idempotent methods (urllib3's default set:
#: never a POST), never on an HTTP status (429 and 5xx are classified by _classify), no redirects
STALE_CONNECTION_RETRY = Retry(
    total=1, connect=1, read=1, redirect=0, status=0, other=0, respect_retry_after_header=False
)
#: HubSpot's ten-second rolling window: the wait when a 429 carries no Retry-After
DEFAULT_RETRY_AFTER_S = 10.0
#: the daily allocation resets at the portal's midnight; an hour is a sane first wait
DAILY_RETRY_AFTER_S = 3600.0
_API_EXCEPTIONS = (
    CompaniesApiException,
    ContactsApiException,
    DealsApiException,
    LineItemsApiException,
    ProductsApiException,
    TicketsApiException,
    NotesApiException,
    TasksApiException,
    AssociationsApiException,
    PropertiesApiException,
)
#: CRM search's own limit when the worker configured no pacing for it (4/s: HubSpot says 4-5)
DEFAULT_SEARCH_RATE_PER_S = 4.0


_DEFAULT_SEARCH_PACER = limits.Pacer(limits.search_limit(VENDOR), DEFAULT_SEARCH_RATE_PER_S)


class HubSpotClient:
    """The API groups of one portal, built once, and the one way to call them: paced, with
    the call timeout, every failure classified (:func:`_classify`) and a silent ``None``
    refused. Reads by unique value, by ID in batches, and through associations."""

    name = VENDOR

    def __init__(self, settings: HubSpotSettings, timeout_s: float = 20.0) -> None:
        self._settings = settings
        # below the activity's start-to-close (connectors/timeouts.py)
        self._timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        overrides = (
            {"host": settings.api_url, "base_url": settings.api_url} if settings.api_url else {}
        )
        self._client = hubspot.HubSpot(
            access_token=settings.access_token.get_secret_value(),
            retry=STALE_CONNECTION_RETRY,
            **overrides,
        )
        # Each ``.basic_api`` access builds a new ApiClient and connection pool: build them once.
        crm = self._client.crm
        self._companies = crm.companies.basic_api
        self._companies_search = crm.companies.search_api
        self._company_batches = crm.companies.batch_api
        self._deals = crm.deals.basic_api
        self._deals_search = crm.deals.search_api
        self._line_item_batches = crm.line_items.batch_api
        self._product_batches = crm.products.batch_api
        self._contact_batches = crm.contacts.batch_api
        self._tickets = crm.tickets.basic_api
        self._notes = crm.objects.notes.basic_api
        self._tasks = crm.objects.tasks.basic_api
        self._notes_search = crm.objects.notes.search_api
        self._tasks_search = crm.objects.tasks.search_api
        self._note_batches = crm.objects.notes.batch_api
        self._task_batches = crm.objects.tasks.batch_api
        self._ticket_batches = crm.tickets.batch_api
        self._associations = crm.associations.v4.basic_api
        self._association_batches = crm.associations.v4.batch_api
        self._properties = crm.properties.core_api

    def _call(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "do_search":
            # CRM search: a few per second per account; paced even where no worker configured it
            if limits.pacing_rate(limits.search_limit(VENDOR)) is None:
                _DEFAULT_SEARCH_PACER.acquire()
            else:
                limits.pace(limits.search_limit(VENDOR))
        limits.pace(VENDOR)  # one HTTP request per call
        try:
            result = fn(*args, _request_timeout=self._timeout_s, **kwargs)
        except _API_EXCEPTIONS as exc:
            limits.observe_headers(VENDOR, getattr(exc, "headers", None))
            raise _classify(exc, what) from None
        except urllib3.exceptions.TimeoutError:
            raise ConnectorError(VENDOR, ErrorKind.RETRYABLE, f"{what}: timeout") from None
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"{what}: network: {type(exc).__name__}"
            ) from None
        _observe_allowance(fn)
        if result is None:
            # An undeclared 2xx status: the client drops the body without a word (reference §0.2).
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"{what}: unexpected response status", code="no_body"
            )
        return result

    def _by_key(
        self,
        api: Any,
        key: str,
        properties: list[str],
        what: str,
        associations: list[str] | None = None,
    ) -> Any | None:
        """The record whose unique ``revbridge_key`` is ``key``, or None."""
        return self._by_unique(api, KEY_PROPERTY, key, properties, what, associations)

    def _create_once(
        self,
        api: Any,
        model: type,
        key: str,
        properties: dict[str, str],
        associations: list[dict[str, Any]],
        read_properties: list[str],
        what: str,
        read_associations: list[str] | None = None,
    ) -> tuple[Any, bool]:
        """``(record, created)``: the record for ``key``, created by this call or found.

        Create first (one call on the happy path); a refusal means the key may be taken by an
        earlier attempt whose answer we never saw, so read by key before believing it. The read
        decides, not the error's wording: HubSpot answers a unique-value clash with 409
        ``CONFLICT`` (what the sandbox does), but its wording for custom unique properties is not
        documented, so any 4xx refusal is checked the same way.
        """
        body = model(properties={**properties, KEY_PROPERTY: key}, associations=associations)
        try:
            return self._call(api.create, body, what=what), True
        except ConnectorError as exc:
            if exc.status is None or not 400 <= exc.status < 500 or exc.status == 429:
                raise
            found = self._by_key(api, key, read_properties, what, read_associations)
            if found is None:
                raise
            return found, False

    def _by_unique(
        self,
        api: Any,
        id_property: str,
        value: str,
        properties: list[str],
        what: str,
        associations: list[str] | None = None,
    ) -> Any | None:
        extra = {"associations": associations} if associations else {}
        try:
            return self._call(
                api.get_by_id,
                value,
                id_property=id_property,
                properties=properties,
                what=what,
                **extra,
            )
        except NotFound:
            return None

    def _batch_read(self, api: Any, model: type, ids: list[str], properties: list[str], what: str):
        """Objects by ID through ``batch/read`` (100 a call), in no particular order. IDs gone
        meanwhile are left out (HubSpot reports them as errors of a 207)."""
        out: list[Any] = []
        for i in range(0, len(ids), _BATCH):
            body = model(inputs=[{"id": x} for x in ids[i : i + _BATCH]], properties=properties)
            page = self._call(api.read, body, what=what)
            out += page.results or []
        return out

    def _associated_ids(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        """Every ``to_type`` record associated with one record (v4, 500 a page): the CRM store,
        consistent with every committed create-with-associations."""
        out: list[str] = []
        after: str | None = None
        while True:
            extra = {"after": after} if after else {}
            page = self._call(
                self._associations.get_page,
                from_type,
                from_id,
                to_type,
                limit=500,
                what="associations",
                **extra,
            )
            out += [str(r.to_object_id) for r in page.results or []]
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return out

    def associated(self, from_type: str, ids: list[str], to_type: str) -> dict[str, list[str]]:
        """``{from id: [to ids]}`` through the v4 batch read (100 ids a call). Objects without
        associations are absent (HubSpot reports them as per-input errors in a 207)."""
        out: dict[str, list[str]] = {}
        for i in range(0, len(ids), 100):
            request = BatchInputPublicFetchAssociationsBatchRequest(
                inputs=[PublicFetchAssociationsBatchRequest(id=x) for x in ids[i : i + 100]]
            )
            page = self._call(
                self._association_batches.get_page, from_type, to_type, request, what="associations"
            )
            for row in page.results or []:
                out[str(row._from.id)] = [str(to.to_object_id) for to in row.to or []]
        return out


def _observe_allowance(fn: Any) -> None:
    """Read the daily-allowance headers of the response the API group's client just got (the
    generated client keeps only the last one; a concurrent call may have replaced it, which only
    makes the figure a moment fresher)."""
    response = getattr(
        getattr(getattr(fn, "__self__", None), "api_client", None), "last_response", None
    )
    getheaders = getattr(response, "getheaders", None)
    if getheaders is not None:
        limits.observe_headers(VENDOR, getheaders())


def _error_body(exc: Any) -> dict[str, Any]:
    raw = getattr(exc, "body", None)
    try:
        body = json.loads(raw) if raw else {}
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def _header(exc: Any, name: str) -> str | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        return headers.get(name)  # urllib3's HTTPHeaderDict: case-insensitive
    except AttributeError:
        return None


def _retry_after(exc: Any, body: dict[str, Any]) -> float:
    raw = _header(exc, "Retry-After")
    try:
        if raw is not None and float(raw) >= 0:
            return float(raw)
    except ValueError:
        pass
    return DAILY_RETRY_AFTER_S if body.get("policyName") == "DAILY" else DEFAULT_RETRY_AFTER_S


def _classify(exc: Any, what: str) -> ConnectorError:
    status = getattr(exc, "status", None) or 0
    body = _error_body(exc)
    code = body.get("category") or body.get("errorType")
    if status == 404:
        return NotFound(VENDOR, what)
    if status == 429:
        return ConnectorError(
            VENDOR,
            ErrorKind.RATE_LIMITED,
            f"{what}: rate limited ({body.get('policyName') or 'unknown policy'})",
            status=status,
            code=body.get("policyName") or code,
            retry_after=_retry_after(exc, body),
        )
    if status == 0 or status >= 500:  # status 0: TLS failure inside the client
        return ConnectorError(
            VENDOR,
            ErrorKind.RETRYABLE,
            f"{what}: {status or 'ssl error'}",
            status=status,
            code=code,
        )
    message = str(body.get("message") or "")[:200]
    return ConnectorError(
        VENDOR,
        ErrorKind.PERMANENT,
        f"{what}: {status} {code or ''} {message}".strip(),
        status=status,
        code=code,
    )

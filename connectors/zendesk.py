"""Zendesk Support as a support desk, through ``zenpy`` (reference: erp-support-email-apis.md §2).

What support context needs from a desk, in the shape it already reads from a CRM
(``get_case`` / ``get_account`` / ``annotate_case``, see ``activities/support.py``):

- **the ticket** with its requester and organization (``GET /tickets/{id}``, ``/users/{id}``,
  ``/organizations/{id}``);
- **the billing customer**: the organization's ``external_id`` first (the billing customer ID,
  as a company's admin sets it on the organization), else the requester's email, looked up
  through the billing connector (``find_customers(email=...)``); several billing customers with
  that email are ambiguous and link nothing (the note says so instead of guessing);
- **an internal note** (a private comment, ``public: false`` sent explicitly) with the billing
  summary, **exactly once** per idempotency key. Zendesk has no idempotency key for ticket
  updates (§2.6, only creation has one), so:

  1. the note ends with a marker ``[revbridge:<key>]``;
  2. the write first reads the ticket (its ``updated_at``), *then* its comments: a comment
     carrying the marker means an earlier attempt committed (commit-then-timeout) — its ID is
     returned and nothing is written;
  3. the update is sent with ``safe_update: true`` and ``updated_stamp`` = the ``updated_at``
     read in step 2, so any change since that read — an earlier attempt of ours whose answer
     was lost or is still in flight, or an agent's reply — is a ``409`` instead of a second note;
     on ``409`` the write starts again at step 2 (at most :data:`CONFLICT_ROUNDS` times).

  The window this leaves: none between two of our own attempts (whichever commits second met a
  stale stamp). Zendesk's ``updated_at`` has one-second resolution; two updates of one ticket
  within the same second would share a stamp — unverified whether Zendesk's check is finer.
- **echoes**: the marker is what the webhook route recognises (``webhooks/zendesk.py``), so the
  ``comment_added`` event our own note causes is dropped;
- **preflight**: the credentials (``GET /users/me``), the user's role (an end user can neither
  read other people's tickets nor write internal notes) and, for an OAuth token, its scopes.

zenpy details handled here: it forces ``https`` unless ``ZENPY_FORCE_SCHEME`` /
``ZENPY_FORCE_NETLOC`` are set (so an ``api_url`` override sets them, process-wide: one Zendesk
per process); it sleeps in-process on a 429's ``Retry-After`` (a worker thread asleep for a
minute), so a session hook hands the 429 back as a rate-limited error carrying the wait and
Temporal's retry waits instead; and we pass our own ``requests`` session, so zenpy's default
https adapter (which re-sends a PUT on 503) is never mounted.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment
from zenpy.lib.exception import (
    APIException,
    RecordNotFoundException,
    ZenpyException,
)

from connectors.base import BillingPlatform, ConnectorError, ErrorKind, NotFound
from domain.models import CrmAccount, Frozen
from domain.preflight import Check, CheckStatus
from domain.records import CaseDetail
from domain.settings import ZendeskSettings

VENDOR = "zendesk"
CONFLICT_ROUNDS = 3
#: the tag every internal note ends with; webhooks/zendesk.py recognises the same shape
MARKER = re.compile(r"\[revbridge:([A-Za-z0-9_.\-]{6,128})\]")
_RETRY_AFTER = "x-revbridge-retry-after"
_ACCOUNT_ID = re.compile(r"o(\d{1,19})\.u(\d{1,19})")
#: scopes an OAuth token needs (the global "read"/"write", or the resource scopes)
_READ_SCOPES = ({"read"}, {"tickets:read", "users:read", "organizations:read"})
_WRITE_SCOPES = ({"write"}, {"tickets:write"})

T = TypeVar("T")


def note_marker(idempotency_key: str) -> str:
    marker = f"[revbridge:{idempotency_key}]"
    if not MARKER.fullmatch(marker):
        raise ValueError("idempotency key is not marker-safe")
    return marker


def is_own_note(body: str | None) -> bool:
    """Whether a comment is an internal note RevBridge wrote (its marker)."""
    return bool(body) and MARKER.search(body or "") is not None


class ZendeskUser(Frozen):
    id: int
    name: str = ""
    email: str | None = None
    role: str = "end-user"
    organization_id: int | None = None


class ZendeskOrganization(Frozen):
    id: int
    name: str = ""
    external_id: str | None = None


class ZendeskTicket(Frozen):
    id: int
    subject: str = ""
    status: str = ""
    created_at: datetime | None = None
    updated_at: str | None = None
    requester: ZendeskUser | None = None
    organization: ZendeskOrganization | None = None


class CustomerMatch(Frozen):
    """The billing customer a ticket belongs to, and how it was found (or why not)."""

    customer_id: str | None
    #: organization_external_id | requester_email | none
    via: str
    detail: str = ""


def account_id(organization_id: int | None, requester_id: int | None) -> str:
    """The "account" support context carries for a ticket: its organization and requester (a
    provider-ID-safe string, so the billing link is found again from it without the ticket)."""
    return f"o{organization_id or 0}.u{requester_id or 0}"


def _hand_429_back(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """zenpy sleeps on ``Retry-After`` inside the call (and crashes on a fractional one): move
    the header aside, so zenpy raises and :func:`_error` reports the wait to Temporal."""
    if response.status_code == 429 and "retry-after" in response.headers:
        response.headers[_RETRY_AFTER] = response.headers.pop("retry-after")
    return response


class ZendeskDesk:
    """Zendesk tickets for support context. ``billing`` finds a requester's billing customer by
    email; ``billing_name`` is the deployment's billing platform (the link's platform)."""

    vendor = VENDOR

    def __init__(
        self,
        settings: ZendeskSettings,
        billing: BillingPlatform | None = None,
        billing_name: str | None = None,
        timeout_s: float = 20.0,
    ) -> None:
        if not (settings.api_token and settings.email) and not settings.oauth_token:
            raise ValueError(
                "zendesk needs ZENDESK_EMAIL + ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN"
            )
        self.settings = settings
        self.billing = billing
        self.billing_name = billing_name
        if settings.api_url:
            # zenpy reads these on every request; they are the only way to leave https://{sub}.zendesk.com
            url = urlsplit(settings.api_url)
            os.environ["ZENPY_FORCE_SCHEME"] = url.scheme or "https"
            os.environ["ZENPY_FORCE_NETLOC"] = url.netloc
        session = requests.Session()
        session.hooks["response"].append(_hand_429_back)
        self._session, self._timeout_s = session, timeout_s
        auth: dict[str, Any] = (
            {"email": settings.email, "token": settings.api_token.get_secret_value()}
            if settings.api_token and settings.email
            else {"oauth_token": settings.oauth_token.get_secret_value()}  # type: ignore[union-attr]
        )
        self._zt = Zenpy(
            subdomain=settings.subdomain,
            session=session,
            timeout=timeout_s,
            disable_cache=True,  # a ticket re-read must see the latest updated_at
            **auth,
        )

    # --- reads --------------------------------------------------------------------------------------

    def get_ticket(self, ticket_id: str | int) -> ZendeskTicket:
        tid = _ticket_number(ticket_id)
        t = self._call(lambda zt: zt.tickets(id=tid), f"ticket {tid}")
        requester = self.get_user(t.requester_id) if t.requester_id else None
        org_id = t.organization_id or (requester.organization_id if requester else None)
        return ZendeskTicket(
            id=t.id,
            subject=t.subject or "",
            status=t.status or "",
            created_at=_parse_time(t.created_at),
            updated_at=t.updated_at,
            requester=requester,
            organization=self.get_organization(org_id) if org_id else None,
        )

    def get_user(self, user_id: int) -> ZendeskUser | None:
        try:
            u = self._call(lambda zt: zt.users(id=user_id), f"user {user_id}")
        except NotFound:
            return None  # deleted since the ticket was opened
        return ZendeskUser(
            id=u.id,
            name=u.name or "",
            email=u.email,
            role=u.role or "end-user",
            organization_id=u.organization_id,
        )

    def get_organization(self, organization_id: int) -> ZendeskOrganization | None:
        try:
            o = self._call(
                lambda zt: zt.organizations(id=organization_id), f"organization {organization_id}"
            )
        except NotFound:
            return None
        return ZendeskOrganization(id=o.id, name=o.name or "", external_id=o.external_id or None)

    def find_customer(
        self, organization: ZendeskOrganization | None, requester: ZendeskUser | None
    ) -> CustomerMatch:
        """The organization's external ID first, then the requester's email through billing."""
        if organization is not None and organization.external_id:
            return CustomerMatch(
                customer_id=organization.external_id,
                via="organization_external_id",
                detail=f"organization {organization.id} external ID",
            )
        if requester is None or not requester.email:
            return CustomerMatch(customer_id=None, via="none", detail="no requester email")
        if self.billing is None:
            return CustomerMatch(customer_id=None, via="none", detail="no billing lookup")
        found = self.billing.find_customers(email=requester.email, company=None)
        # the lookup was by email alone; a connector that does not echo the email is trusted
        exact = [
            c for c in found if c.email is None or c.email.casefold() == requester.email.casefold()
        ]
        if len(exact) == 1:
            return CustomerMatch(
                customer_id=exact[0].id, via="requester_email", detail="requester email"
            )
        why = "no billing customer" if not exact else f"{len(exact)} billing customers"
        return CustomerMatch(
            customer_id=None, via="none", detail=f"{why} with the requester's email"
        )

    # --- the support-desk seam (the CRM-shaped calls support context makes) --------------------

    def get_case(self, case_id: str) -> CaseDetail:
        t = self.get_ticket(case_id)
        return CaseDetail(
            id=str(t.id),
            number=str(t.id),
            account_id=account_id(
                t.organization.id if t.organization else None,
                t.requester.id if t.requester else None,
            ),
            subject=t.subject,
            status=t.status,
            opened_at=t.created_at,
        )

    def get_account(self, account_ref: str) -> CrmAccount:
        m = _ACCOUNT_ID.fullmatch(account_ref)
        if m is None:
            raise NotFound(VENDOR, "account")
        org_id, user_id = int(m.group(1)), int(m.group(2))
        org = self.get_organization(org_id) if org_id else None
        requester = self.get_user(user_id) if user_id else None
        match = self.find_customer(org, requester)
        # an organization is a company; a requester alone is a person, whose name stays in Zendesk
        name = (org.name if org else "") or f"Zendesk requester {user_id or 'unknown'}"
        return CrmAccount(
            id=account_ref,
            name=name,
            billing_customer_id=match.customer_id,
            billing_platform=self.billing_name if match.customer_id else None,
        )

    def annotate_case(self, case_id: str, text: str, idempotency_key: str) -> str:
        return self.add_internal_note(case_id, text, idempotency_key)

    @staticmethod
    def owns_account_id(account_ref: str) -> bool:
        """Whether an account ID is one :meth:`get_case` made (not a CRM's)."""
        return _ACCOUNT_ID.fullmatch(account_ref) is not None

    # --- the one write ------------------------------------------------------------------------------

    def add_internal_note(self, ticket_id: str | int, text: str, idempotency_key: str) -> str:
        """A private comment, once per key (see the module docstring); returns the comment ID."""
        tid = _ticket_number(ticket_id)
        marker = note_marker(idempotency_key)
        for _ in range(CONFLICT_ROUNDS):
            ticket = self._call(lambda zt: zt.tickets(id=tid), f"ticket {tid}")
            stamp = ticket.updated_at  # read BEFORE the comments: see step 3
            existing = self._marked_comment(tid, marker)
            if existing is not None:
                return existing
            ticket.comment = Comment(body=f"{text}\n\n{marker}", public=False)
            ticket.safe_update = True
            ticket.updated_stamp = stamp
            try:
                written = self._call(lambda zt, t=ticket: zt.tickets.update(t), f"ticket {tid}")
            except ConnectorError as exc:
                if exc.status == 409:
                    continue  # changed since our read: re-read, re-check the marker
                raise
            return self._comment_id(written, marker) or self._marked_comment(tid, marker) or ""
        raise ConnectorError(
            VENDOR,
            ErrorKind.RETRYABLE,
            f"ticket {tid} kept changing during the note write",
            status=409,
            code="update_conflict",
        )

    def _marked_comment(self, tid: int, marker: str) -> str | None:
        def find(zt: Zenpy) -> str | None:
            for c in zt.tickets.comments(tid):
                if marker in (c.body or ""):
                    return str(c.id)
            return None

        return self._call(find, f"comments of ticket {tid}")

    @staticmethod
    def _comment_id(written: Any, marker: str) -> str | None:
        audit = getattr(written, "audit", None)
        for event in getattr(audit, "events", None) or []:
            e = event if isinstance(event, dict) else getattr(event, "__dict__", {})
            if e.get("type") == "Comment" and marker in str(e.get("body") or ""):
                return str(e.get("id"))
        return None

    # --- preflight ------------------------------------------------------------------------------------

    def preflight(self) -> list[Check]:
        """The credentials, the user's role and (OAuth) the token's scopes: three calls at most."""
        try:
            me = self._call(lambda zt: zt.users.me(), "current user")
        except ConnectorError as exc:
            return [
                _check("credentials", CheckStatus.FAIL, _reason(exc), _CREDENTIALS_FIX),
                _check("role", CheckStatus.SKIP, "not checked without credentials"),
            ]
        if not me.id:  # Zendesk answers an anonymous user rather than 401 on some accounts
            return [_check("credentials", CheckStatus.FAIL, "not authenticated", _CREDENTIALS_FIX)]
        checks = [_check("credentials", CheckStatus.OK, f"authenticated as user {me.id}")]
        role = me.role or "end-user"
        if role in ("admin", "agent"):
            checks.append(_check("role", CheckStatus.OK, f"{role}: reads tickets, writes notes"))
        else:
            checks.append(
                _check(
                    "role",
                    CheckStatus.FAIL,
                    f"{role} cannot read other requesters' tickets or write internal notes",
                    "use an agent's (or admin's) API token",
                )
            )
        if self.settings.oauth_token and not self.settings.api_token:
            checks.append(self._scope_check())
        return checks

    def _scope_check(self) -> Check:
        base = (self.settings.api_url or f"https://{self.settings.subdomain}.zendesk.com").rstrip(
            "/"
        )
        try:
            # zenpy has no call for the current token: the same session (its auth), directly
            token = self._session.get(
                f"{base}/api/v2/oauth/tokens/current.json", timeout=self._timeout_s
            )
            token.raise_for_status()
            scopes = set(token.json()["token"]["scopes"])
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            return _check(
                "scopes", CheckStatus.WARN, f"token scopes not read ({type(exc).__name__})"
            )
        missing = [
            kind
            for kind, options in (("read", _READ_SCOPES), ("write", _WRITE_SCOPES))
            if not any(need <= scopes for need in options)
        ]
        if missing:
            return _check(
                "scopes",
                CheckStatus.FAIL,
                f"token lacks {' and '.join(missing)} scopes (has {', '.join(sorted(scopes))})",
                "grant read + write (or tickets:read/write, users:read, organizations:read)",
            )
        return _check("scopes", CheckStatus.OK, ", ".join(sorted(scopes)))

    # --- errors -----------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[Zenpy], T], what: str) -> T:
        try:
            return fn(self._zt)
        except RecordNotFoundException:
            raise NotFound(VENDOR, what) from None
        except APIException as exc:
            raise _error(getattr(exc, "response", None), what) from None
        except requests.HTTPError as exc:
            raise _error(exc.response, what) from None
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"{what}: {type(exc).__name__}", code="network"
            ) from None
        except ZenpyException as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.PERMANENT, f"{what}: {type(exc).__name__}", code="client"
            ) from None


def _error(response: requests.Response | None, what: str) -> ConnectorError:
    """A non-2xx answer as one line: the status, Zendesk's ``error`` code, never the body."""
    if response is None:
        return ConnectorError(VENDOR, ErrorKind.RETRYABLE, f"{what}: no response", code="network")
    status = response.status_code
    try:
        code = str(json.loads(response.text or "null").get("error") or "")[:60] or None
    except (ValueError, AttributeError):
        code = None
    if status == 429:
        wait = response.headers.get(_RETRY_AFTER) or response.headers.get("retry-after")
        try:
            retry_after = max(1.0, float(wait)) if wait else None
        except ValueError:
            retry_after = None
        return ConnectorError(
            VENDOR,
            ErrorKind.RATE_LIMITED,
            f"{what}: rate limited" + (f", retry after {retry_after:g}s" if retry_after else ""),
            status=429,
            code=code or "rate_limited",
            retry_after=retry_after,
        )
    kind = ErrorKind.RETRYABLE if status >= 500 or status == 409 else ErrorKind.PERMANENT
    return ConnectorError(
        VENDOR,
        kind,
        f"{what}: HTTP {status}" + (f" {code}" if code else ""),
        status=status,
        code=code,
    )


def _ticket_number(value: str | int) -> int:
    text = str(value)
    if not text.isdigit() or len(text) > 19:
        raise NotFound(VENDOR, "ticket")  # a Zendesk ticket ID is a number
    return int(text)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


_CREDENTIALS_FIX = (
    "set ZENDESK_SUBDOMAIN, ZENDESK_EMAIL and ZENDESK_API_TOKEN (or ZENDESK_OAUTH_TOKEN)"
)


def _check(name: str, status: CheckStatus, detail: str, fix: str = "") -> Check:
    return Check(system=VENDOR, name=name, status=status, detail=detail, fix=fix)


def _reason(exc: ConnectorError) -> str:
    if exc.status == 401:
        return "Zendesk refused the credentials (401)"
    return str(exc)

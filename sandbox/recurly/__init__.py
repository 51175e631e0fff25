"""A stateful Recurly (API v2021-02-25) emulator, driven by the official ``recurly`` client.

Vendor API at the root (``/accounts``, ``/subscriptions``, ``/invoices``, ...; HTTP Basic with the
private API key as username; ``Accept: application/vnd.recurly.v2021-02-25``): accounts (``code``
as the external key, custom fields, billing info, notes, balance), plans and add-ons (fixed and
usage), subscriptions (create, change now / at renewal, pause, resume, cancel, reactivate,
terminate), invoices (collect, mark failed / successful, void, reopen, refund as credit
invoices, line items), transactions with decline codes, coupons and redemptions, usage, dunning
campaigns, custom field definitions; cursor pagination, Recurly's error bodies, version
negotiation, ``X-RateLimit-*`` and 429. Signed JSON webhooks (``recurly-signature``).

Scenario controls (no auth, never in the request ledger): ``POST /_sandbox/seed`` (see
:mod:`sandbox.recurly.seeding`), ``POST /_sandbox/recurly/invoices/{id}/fail_payment``
``{"decline_code"?}``, ``POST /_sandbox/recurly/invoices/{id}/pay``,
``POST /_sandbox/recurly/accounts/{code}/card`` ``{"decline_code": str | null}``,
``POST /_sandbox/recurly/rate_limit`` ``{"per_minute", "window_s"?, "count_writes"?}``,
``GET /_sandbox/recurly/notifications``, ``POST /_sandbox/recurly/notifications/redeliver``
``{"ids"?, "reverse"?}``.
"""

from .emulator import RecurlyEmulator

__all__ = ["RecurlyEmulator"]

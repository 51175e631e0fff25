"""A stateful Chargebee API v2 (Product Catalog 2.0) emulator, driven by the official client.

Vendor API (``/api/v2``, HTTP Basic with the api key as username): customers, subscriptions
(``subscription_for_items``, ``update_for_items``, ``cancel_for_items``), invoices
(``collect_payment``, ``record_payment``, payments), transactions, comments, coupons
(``create_for_items``), promotional credits, item prices, events, usages (metered), usage
events (JSON), custom field configs, subscription estimates. Customers take ``cf_*`` custom
fields; ``cf_x[is]`` list filters work only for fields the site made searchable (others are
silently ignored, as on Chargebee: chargebee-typescript issues #6 and #69). Site settings:
payment terms offered (``net_term_days``), Contract Terms on/off; ``ChargebeeEmulator.fresh_site()``
is a new site (no custom fields, out-of-the-box terms, Contract Terms off). Test-site limits are on
by default (150 requests/min, comments of at most 1,000 characters; ``limits=False`` turns them
off).
``subscription_for_items`` takes ``discounts[...]``, ``billing_cycles``, ``contract_term[...]``
and ``net_term_days``; ``update_for_items`` records ``subscription_changed`` with the
subscription after the change.

Scenario controls (no auth, never in the request ledger):

- ``POST /_sandbox/seed`` with::

    {"custom_fields": [{"api_name": "cf_...", "entity_type": "customer", "searchable": bool}],
     "item_prices": [{"id", "item_id", "name", "price", "currency_code", "period",
                      "period_unit", "item_type"?, "metered"?}],
     "coupons": [{"id", "name", "discount_type", "discount_percentage" | "discount_amount", ...}],
     "customers": [{"id"?, "first_name", "last_name", "email", "company", "auto_collection",
                    "net_term_days", "meta_data" (dict), "billing_address" (dict), "created_at"?,
                    "promotional_credits"?,
                    "card": {"decline_code": null | str, "last4", "expiry_month", "expiry_year"}
                            | null (no card; absent: a working card)}],
     "subscriptions": [{"id"?, "customer_id", "items": [{"item_price_id", "quantity"}],
                        "status"?, "started_at"?, "coupon_ids"?, "trial_end"?, "cancelled_at"?}],
     "invoices": [{"id"?, "customer_id", "subscription_id"?, "total", "status", "date",
                   "due_date"?, "amount_paid"? | "amount_due"?, "currency_code"?, "dunning_status"?,
                   "next_retry_at"?, "line_items"?}],
     "transactions": [{"id"?, "invoice_id", "status": "success" | "failure", "amount"?,
                       "error_code"?, "date"?, "payment_method"?}]}

  answers the ids created per kind. Seeding records no events.
- ``POST /_sandbox/chargebee/customers/{id}/card`` ``{"decline_code": str | null}``
- ``POST /_sandbox/chargebee/invoices/{id}/fail_payment`` ``{"decline_code"?: str}`` and
  ``POST /_sandbox/chargebee/invoices/{id}/pay``: a charge attempt; answer the event created.
- ``POST /_sandbox/chargebee/rate_limit`` ``{"per_minute": int | null, "window_s"?: float}``
- ``POST /_sandbox/chargebee/site`` ``{"net_terms"?: [days], "contract_terms"?: bool,
  "custom_field"?: {"api_name": "cf_...", "searchable"?: bool, ...}}``: what a site admin (or
  Chargebee support) changes: adds payment terms, enables Contract Terms, creates a custom field
  or makes it searchable.
- ``GET /_sandbox/chargebee/events``: every event, oldest first.
"""

from .emulator import ChargebeeEmulator

__all__ = ["ChargebeeEmulator"]

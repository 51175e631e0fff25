"""``revbridge demo --scenario expansion``: usage growth becomes an opportunity with a draft
quote, and the won deal upgrades the existing subscription.

On the running stack's billing sandbox (Chargebee, Stripe, Zuora or Recurly) it seeds a Starter
plan that includes 10,000 API calls a month (the catalogue names the limit and the next tier,
Growth, as each platform prices it: harness/expansion_book.py for Zuora and Recurly), a customer
on it, and 30 days of growing usage; in Salesforce, the linked account and
the Growth product — or, on HubSpot (with Chargebee or Stripe), the expansion deal properties
``revbridge setup crm`` creates, the linked company (its owner's) and the Growth product by SKU. Then it runs the daily usage intake the Schedule would run. Expansion ships
in ``assist`` mode (the account owner gets a task proposing the deal); so the opportunity and the
draft quote are created, this demo runs the intake and the expansion workflows on a worker of
its own whose policy copy says ``expansion: auto`` — your policies/ are not touched. It prints
the forecast, the ``Expansion_Signal__c``, the opportunity and the draft quote (on HubSpot: the
deal with its ``expansion_*`` properties, the DRAFT quote and its line item); then wins the
deal in the CRM (its callout — HubSpot: the sandbox portal's ``deal.propertyChange`` webhook —
starts quote-to-cash on the stack), approves the plan change as the RevOps approver, and shows
the same subscription on Growth, the new MRR in the CRM (the account, or the company) and the
win recorded by the expansion workflow.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from simple_salesforce import format_soql
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from activities.policy import DEFAULT_POLICY_DIR
from cli.codec_dev import approver_client
from cli.config import CliError, StackConfig
from connectors.registry import build_billing, build_crm
from domain import expansion as ex
from domain.approvals import QUERY, UPDATE, ApprovalSignal, Decision, PendingApproval
from domain.expansion import ExpansionStatus, IntakeInput, IntakeResult, expansion_workflow_id
from domain.ids import q2c_workflow_id
from domain.quote import WORKFLOW_TYPE as Q2C
from domain.quote import QuoteToCashInput, QuoteToCashResult
from domain.settings import Settings
from harness import expansion_book
from infra.codec import data_converter

WAIT_S = 60.0
CALLOUT_WAIT_S = 6.0
DAYS = 30
REVOPS = "bob@example.com"  # policies/approvers.yaml: revops
#: the billing platforms the HubSpot demo runs on (tests/expansion/test_hubspot_pairs.py)
HUBSPOT_BILLING = ("chargebee", "stripe")
#: the company's owner in the sandbox portal (the deal is the owner's)
HUBSPOT_OWNER = "77001"
Say = Any


def check_pair(billing: str, crm: str) -> None:
    """The pairs this demo runs on (cli/demo.py asks before it starts a stack)."""
    if crm == "hubspot" and billing not in HUBSPOT_BILLING:
        raise CliError(
            "the expansion demo runs on HubSpot with chargebee or stripe (zuora and recurly "
            f"run it with salesforce), not {billing} × {crm}"
        )
    if crm not in ("salesforce", "hubspot"):
        raise CliError(f"the expansion demo runs on salesforce or hubspot, not {billing} × {crm}")


async def scenario(cfg: StackConfig, say: Say) -> dict[str, Any]:
    from cli.channels import stack_env

    settings = Settings.from_env(stack_env(cfg))
    check_pair(settings.billing, settings.crm)
    client = await Client.connect(
        cfg.temporal.address, namespace=cfg.temporal.namespace, data_converter=data_converter()
    )
    approver = await approver_client(cfg, client, REVOPS)
    return await run_scenario(
        settings,
        client,
        approver,
        say,
        ui_url=cfg.ui_url(),
        suffix=datetime.now(UTC).strftime("%m%d%H%M%S"),
    )


async def run_scenario(
    settings: Settings,
    client: Client,
    approver: Client,
    say: Say,
    *,
    ui_url: str,
    suffix: str,
    callout_wait_s: float = CALLOUT_WAIT_S,
) -> dict[str, Any]:
    from workers.main import build_worker

    billing, crm = build_billing(settings), build_crm(settings)
    seeded = await asyncio.to_thread(_seed_billing, settings, billing, suffix)
    say(
        f"Seeded {settings.billing}: customer {seeded['customer']} on Starter (10,000 API calls "
        f"a month included, next tier Growth), {DAYS} days of usage growing 3 calls a day."
    )
    hubspot = settings.crm == "hubspot"
    if hubspot:
        account = await asyncio.to_thread(_seed_hubspot, crm, settings.billing, seeded, suffix)
        say(
            f"Seeded HubSpot: the expansion deal properties (as `revbridge setup crm`), company "
            f"{account} linked to it (owner {HUBSPOT_OWNER}), product RB-GROWTH-{suffix}."
        )
    else:
        account = await asyncio.to_thread(_seed_crm, crm, settings.billing, seeded, suffix)
        say(f"Seeded Salesforce: account {account} linked to it, product RB-GROWTH-{suffix}.")
    queue = f"{settings.task_queue}-expansion-demo"
    tmp = Path(tempfile.mkdtemp(prefix="revbridge-expansion-demo-"))
    policy_dir = _auto_policies(settings, tmp, seeded["growth"], suffix)
    expansion = client.get_workflow_handle(
        expansion_workflow_id(settings.billing, seeded["customer"])
    )
    try:
        async with build_worker(client, billing, crm, task_queue=queue, policy_dir=policy_dir):
            intake = await client.execute_workflow(
                ex.INTAKE_WORKFLOW_TYPE,
                IntakeInput(billing=settings.billing, crm=settings.crm, intake_id=f"demo-{suffix}"),
                id=f"expansion-intake-demo-{suffix}",
                task_queue=queue,
                result_type=IntakeResult,
            )
            say(f"  ✓ usage intake: {intake.customers} customer(s) in {intake.pages} page(s)")
            status = await _until(
                lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
                lambda s: bool(s.open) and "opportunity" in s.open[0],
                "the expansion to open",
            )
            forecast = next(iter(status.last_forecast.values()), "")
            say(f"  ✓ forecast: {forecast}")
            if hubspot:
                records = await asyncio.to_thread(_hubspot_records, crm, account)
                sig, opp, quote = records["signal"], records["opportunity"], records["quote"]
                _say_hubspot(records, say)
                await asyncio.to_thread(_win_in_portal, settings, opp["Id"])
                say(f"  ✓ the account executive won deal {opp['Id']} in the HubSpot portal")
            else:
                records = await asyncio.to_thread(_records, crm, account)
                sig, opp, quote = _say_salesforce(records, say)
                await asyncio.to_thread(
                    crm.client.Opportunity.update, opp["Id"], {"StageName": "Closed Won"}
                )
                say(f"  ✓ the account executive won {opp['Id']}")
            q2c = await _q2c(client, settings, opp["Id"], say, callout_wait_s)
            [pending] = await _until(
                lambda: q2c.query(QUERY, result_type=list[PendingApproval]), bool, "the approval"
            )
            await approver.get_workflow_handle(q2c.id).execute_update(
                UPDATE,
                ApprovalSignal(
                    action_id=pending.action_id,
                    decision=Decision.APPROVE,
                    approver=REVOPS,
                    note="demo: upgrade approved",
                ),
            )
            say(f"  ✓ {REVOPS} approved {pending.action.describe()}")
            result = await asyncio.wait_for(q2c.result(), timeout=WAIT_S)
            if result.outcome != "live":
                raise CliError(f"quote-to-cash ended {result.outcome}: {result.reason}")
            say(f"  ✓ quote-to-cash: {result.reason}")
            status = await _until(
                lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
                lambda s: bool(s.closed),
                "the win to be recorded",
            )
            # and audited (its last step): no activity of it is cut off by the end
            await _until(
                lambda: expansion.describe(),
                lambda d: not d.raw_description.pending_activities,
                "the win's audit",
            )
            await expansion.terminate("demo over")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    subs = await asyncio.to_thread(_subscriptions, settings, billing, seeded["customer"])
    read = _hubspot_records if hubspot else _records
    mrr = (await asyncio.to_thread(read, crm, account))["mrr"]
    say(
        f"  ✓ {settings.billing}: {len(subs)} subscription(s) for the customer — "
        + "; ".join(f"{s['id']} on {', '.join(s['prices'])}" for s in subs)
        + f"; CRM {'company' if hubspot else 'account'} MRR {mrr:,.2f}"
    )
    say(f"  ✓ expansion outcome: {status.closed[-1]}")
    return {
        "pair": {"billing": settings.billing, "crm": settings.crm},
        "web_ui": ui_url,
        "customer": seeded["customer"],
        "forecast": forecast,
        "signal": sig,
        "opportunity": opp,
        "quote": quote,
        "quote_to_cash": {"workflow": q2c.id, "outcome": result.outcome, "reason": result.reason},
        "subscriptions": subs,
        "crm_mrr": mrr,
        "expansion": status.closed,
    }


def _say_salesforce(records: dict[str, Any], say: Say) -> tuple[dict, dict, dict]:
    sig, opp, quote = records["signal"], records["opportunity"], records["quote"]
    say(
        f"  ✓ Expansion_Signal__c {sig['Id']}: {sig['Status__c']}, limit in "
        f"{sig['Days_To_Limit__c']:.0f} days (band {sig['Crossing_Earliest__c']} – "
        f"{sig['Crossing_Latest__c']}), confidence {sig['Confidence__c']:.0f}%, "
        f"recommends {sig['Recommended_Price__c']}"
    )
    say(
        f"  ✓ Opportunity {opp['Id']} ({opp['StageName']}, {opp['Type']}, close "
        f"{opp['CloseDate']}); Quote {quote['Id']} in {quote['Status']} — never sent by "
        "RevBridge"
    )
    return sig, opp, quote


def _say_hubspot(records: dict[str, Any], say: Say) -> None:
    deal, quote = records["opportunity"], records["quote"]
    p = deal["properties"]
    say(
        f"  ✓ deal {deal['Id']} ({p['dealname']}; {p['dealstage']}, {p['dealtype']}, owner "
        f"{p['hubspot_owner_id']}, amount {float(p['amount'] or 0):,.2f}) with its expansion "
        f"properties: expansion_status {p['expansion_status']}, limit in "
        f"{float(p['expansion_days_to_limit']):.0f} days (band {p['expansion_crossing_earliest']}"
        f" – {p['expansion_crossing_latest']}), confidence {float(p['expansion_confidence']):.0f}"
        f"%, recommends {p['expansion_recommended_price']} (+{p['expansion_upgrade_mrr']} MRR)"
    )
    for line in (p.get("expansion_reasons") or "").splitlines():
        say(f"      {line}")
    say(
        f"  ✓ quote {quote['Id']} in {quote['Status']} ({quote['title']}, expires "
        f"{quote['expires']}) — never published or sent by RevBridge; line item: "
        + "; ".join(f"{li['name']} × {li['quantity']} at {li['price']}" for li in quote["lines"])
    )


def print_summary(summary: dict[str, Any], say: Say) -> None:
    say("")
    say(f"Expansion on {summary['pair']['billing']} × {summary['pair']['crm']}:")
    say(f"  forecast     {summary['forecast']}")
    sig = summary["signal"]
    reasons = sig.get("Reasons__c") or sig.get("properties", {}).get("expansion_reasons") or ""
    say(f"  signal       {sig['Id']} ({reasons.splitlines()[0] if reasons else '-'})")
    say(f"  opportunity  {summary['opportunity']['Id']}, draft quote {summary['quote']['Id']}")
    say(f"  won          {summary['quote_to_cash']['reason']}; CRM MRR {summary['crm_mrr']:,.2f}")
    say(f"  outcome      {summary['expansion'][-1]}")
    say(f"  Web UI       {summary['web_ui']}")


# --- seeding ------------------------------------------------------------------------------------


def _seed_billing(settings: Settings, billing: Any, suffix: str) -> dict[str, str]:
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    if settings.billing in expansion_book.PLATFORMS:
        api = settings.zuora if settings.billing == "zuora" else settings.recurly
        url = str(getattr(api, "api_url", "") or "")
        return expansion_book.seed_metered_customer(settings.billing, billing, url, suffix, DAYS)
    if settings.billing == "chargebee":
        assert settings.chargebee and settings.chargebee.api_url
        ids = {k: f"{k}-{suffix}-USD-monthly" for k in ("starter", "growth", "calls")}
        common = {"currency_code": "USD", "period": 1, "period_unit": "month"}
        body = {
            "item_prices": [
                {**common, "id": ids["starter"], "name": "Starter", "price": 10_000,
                 "item_type": "plan",
                 "metadata": {"included_units": {ids["calls"]: 10_000}, "upgrade_to": ids["growth"]}},
                {**common, "id": ids["growth"], "name": "Growth", "price": 30_000,
                 "item_type": "plan", "metadata": {"included_units": {ids["calls"]: 50_000}}},
                {**common, "id": ids["calls"], "name": "API calls", "price": 2,
                 "item_type": "addon", "metered": True},
            ]
        }  # fmt: skip
        resp = httpx.post(settings.chargebee.api_url + "/_sandbox/seed", json=body, timeout=60)
        if resp.status_code != 200:
            raise CliError(f"seeding Chargebee failed: HTTP {resp.status_code}")
        cb = billing.client
        cus = cb.Customer.create(
            {"company": f"Initech {suffix}", "email": f"ops-{suffix}@initech.example"}
        )
        sub = cb.Subscription.create_with_items(
            cus.customer.id,
            {
                "subscription_items": [
                    {"item_price_id": ids["starter"]},
                    {"item_price_id": ids["calls"]},
                ]
            },
        ).subscription
        for i in range(DAYS):
            at = int((noon - timedelta(days=DAYS - i)).timestamp())
            cb.Usage.create(
                sub.id,
                {"item_price_id": ids["calls"], "quantity": str(150 + 3 * i), "usage_date": at},
            )
        return {"customer": cus.customer.id, "subscription": sub.id, "growth": ids["growth"]}
    sc = billing._client
    meter = sc.v1.billing.meters.create(
        {
            "display_name": f"API calls {suffix}",
            "event_name": f"api_calls_{suffix}",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "value_settings": {"event_payload_key": "value"},
        }
    )
    monthly = {"interval": "month"}
    calls = sc.v1.prices.create(
        {"currency": "usd", "unit_amount": 2, "product_data": {"name": "API calls"},
         "recurring": {**monthly, "usage_type": "metered", "meter": meter.id}}
    )  # fmt: skip
    growth = sc.v1.prices.create(
        {"currency": "usd", "unit_amount": 30_000, "recurring": monthly,
         "product_data": {"name": "Growth"},
         "metadata": {"included_units": json.dumps({calls.id: 50_000})}}
    )  # fmt: skip
    starter = sc.v1.prices.create(
        {"currency": "usd", "unit_amount": 10_000, "recurring": monthly,
         "product_data": {"name": "Starter"},
         "metadata": {"included_units": json.dumps({calls.id: 10_000}), "upgrade_to": growth.id}}
    )  # fmt: skip
    customer = sc.v1.customers.create({"name": f"Initech {suffix}"}).id
    sub = sc.v1.subscriptions.create(
        {"customer": customer, "items": [{"price": starter.id}, {"price": calls.id}]}
    ).id
    for i in range(DAYS):
        sc.v1.billing.meter_events.create(
            {
                "event_name": f"api_calls_{suffix}",
                "payload": {"stripe_customer_id": customer, "value": str(150 + 3 * i)},
                "timestamp": int((noon - timedelta(days=DAYS - i)).timestamp()),
            }
        )
    return {"customer": customer, "subscription": sub, "growth": growth.id}


def _seed_crm(crm: Any, billing: str, seeded: dict[str, str], suffix: str) -> str:
    sf = crm.client
    account = sf.Account.create(
        {
            "Name": f"Initech {suffix}",
            "Billing_Customer_Id__c": seeded["customer"],
            "Billing_Platform__c": billing,
        }
    )["id"]
    book = crm.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")[0]["Id"]
    product = sf.Product2.create(
        {"Name": "Growth", "ProductCode": f"RB-GROWTH-{suffix}", "IsActive": True}
    )["id"]
    sf.PricebookEntry.create(
        {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": 300.0, "IsActive": True}
    )
    return account


def _auto_policies(settings: Settings, tmp: Path, growth: str, suffix: str) -> Path:
    src = Path(settings.policy_dir) if settings.policy_dir else DEFAULT_POLICY_DIR
    dst = tmp / "policies"
    shutil.copytree(src, dst)
    modes = dst / "modes.yaml"
    text = modes.read_text()
    if "expansion:" in text:
        text = "\n".join(
            "  expansion: auto" if line.strip().startswith("expansion:") else line
            for line in text.splitlines()
        )
    else:
        text = text.replace("use_cases:\n", "use_cases:\n  expansion: auto\n")
    modes.write_text(text + "\n")
    products = dst / "products.yaml"
    products.write_text(
        products.read_text() + f"  RB-GROWTH-{suffix}:\n    {settings.billing}: {growth}\n"
    )
    return dst


def _seed_hubspot(crm: Any, billing: str, seeded: dict[str, str], suffix: str) -> str:
    """The portal as `revbridge setup crm` leaves it for expansion, a company linked to the
    customer (its owner's), and the Growth product under the CRM product code; then waits until
    HubSpot's search (which lags its writes) finds both, as the workflows will look them up."""
    from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyCreate
    from hubspot.crm.products import SimplePublicObjectInputForCreate as ProductCreate

    from cli.crm_use_cases import expansion_properties
    from connectors.expansion.hubspot import HubSpotExpansion
    from connectors.hubspot_setup import setup_apply, setup_plan

    setup_apply(crm, setup_plan(crm, expansion_properties()))
    api = crm._client.crm
    company = api.companies.basic_api.create(
        CompanyCreate(
            properties={
                "name": f"Initech {suffix}",
                "billing_customer_id": seeded["customer"],
                "billing_platform": billing,
                "hubspot_owner_id": HUBSPOT_OWNER,
            }
        )
    )
    sku = f"RB-GROWTH-{suffix}"
    api.products.basic_api.create(
        ProductCreate(
            properties={
                "name": "Growth",
                "hs_sku": sku,
                "price": "300.00",
                "recurringbillingfrequency": "monthly",
            }
        )
    )
    records = HubSpotExpansion(crm)
    deadline = time.monotonic() + WAIT_S
    while not (records.find_account(billing, seeded["customer"]) and records._product(sku)):
        if time.monotonic() > deadline:
            raise CliError("HubSpot's search never found the seeded company and product")
        time.sleep(0.5)
    return str(company.id)


def _hubspot_records(crm: Any, company: str) -> dict[str, Any]:
    """The company's expansion deal with its properties, the deal's quote and its line items,
    and the company's MRR, read back through the official client."""
    from connectors.expansion.hubspot import SIGNAL_PROPERTIES

    api = crm._client.crm
    links = api.associations.v4.basic_api
    mrr = api.companies.basic_api.get_by_id(company, properties=["mrr"]).properties.get("mrr")
    deals = links.get_page("companies", company, "deals").results
    if not deals:
        return {"signal": {}, "opportunity": {}, "quote": {}, "mrr": float(mrr or 0)}
    deal_id = str(deals[0].to_object_id)
    names = ["dealname", "dealstage", "dealtype", "hubspot_owner_id", "amount", "closedate"]
    props = api.deals.basic_api.get_by_id(
        deal_id, properties=names + [n for n, _ in SIGNAL_PROPERTIES]
    ).properties
    deal = {"Id": deal_id, "properties": props}
    quote: dict[str, Any] = {}
    quotes = links.get_page("deals", deal_id, "quotes").results
    if quotes:
        quote_id = str(quotes[0].to_object_id)
        q = api.quotes.basic_api.get_by_id(
            quote_id, properties=["hs_status", "hs_title", "hs_expiration_date"]
        ).properties
        lines = []
        for row in links.get_page("quotes", quote_id, "line_items").results:
            li = api.line_items.basic_api.get_by_id(
                str(row.to_object_id), properties=["name", "quantity", "price"]
            ).properties
            lines.append({k: li.get(k) for k in ("name", "quantity", "price")})
        quote = {
            "Id": quote_id,
            "Status": q.get("hs_status"),
            "title": q.get("hs_title"),
            "expires": (q.get("hs_expiration_date") or "")[:10],
            "lines": lines,
        }
    return {"signal": deal, "opportunity": deal, "quote": quote, "mrr": float(mrr or 0)}


def _win_in_portal(settings: Settings, deal: str) -> None:
    """The rep moves the deal to closedwon in the portal's UI: the sandbox portal sends its
    ``deal.propertyChange`` webhook to the stack's webhook service, as HubSpot does."""
    assert settings.hubspot and settings.hubspot.api_url
    resp = httpx.post(
        f"{settings.hubspot.api_url}/_sandbox/hubspot/objects/deals/{deal}/ui_update",
        json={"properties": {"dealstage": "closedwon"}},
        timeout=30,
    )
    if resp.status_code != 200:
        raise CliError(f"winning the deal in the HubSpot portal failed: HTTP {resp.status_code}")


# --- reading back -------------------------------------------------------------------------------


def _records(crm: Any, account: str) -> dict[str, Any]:
    def one(soql: str) -> dict[str, Any]:
        rows = crm.query(soql)
        return {k: v for k, v in rows[0].items() if k != "attributes"} if rows else {}

    opp = one(
        format_soql(
            "SELECT Id, StageName, Type, CloseDate FROM Opportunity WHERE AccountId = {}", account
        )
    )
    return {
        "signal": one(
            format_soql(
                "SELECT Id, Status__c, Days_To_Limit__c, Crossing_Earliest__c, "
                "Crossing_Latest__c, Confidence__c, Recommended_Price__c, Reasons__c "
                "FROM Expansion_Signal__c WHERE Account__c = {}",
                account,
            )
        ),
        "opportunity": opp,
        "quote": one(
            format_soql("SELECT Id, Status FROM Quote WHERE OpportunityId = {}", opp.get("Id"))
        )
        if opp
        else {},
        "mrr": one(format_soql("SELECT MRR__c FROM Account WHERE Id = {}", account)).get("MRR__c")
        or 0.0,
    }


def _subscriptions(settings: Settings, billing: Any, customer: str) -> list[dict[str, Any]]:
    if settings.billing in expansion_book.PLATFORMS:
        return expansion_book.subscriptions(settings.billing, billing, customer)
    if settings.billing == "chargebee":
        subs = billing.client.Subscription.list({"customer_id[is]": customer}).list
        return [
            {
                "id": e.subscription.id,
                "prices": [i.item_price_id for i in e.subscription.subscription_items],
            }
            for e in subs
        ]
    subs = billing._client.v1.subscriptions.list({"customer": customer, "status": "all"}).data
    return [{"id": s.id, "prices": [i.price.id for i in s["items"].data]} for s in subs]


async def _q2c(
    client: Client, settings: Settings, opp: str, say: Say, wait_s: float
) -> WorkflowHandle:
    """The run the CRM's callout started; if none arrived, the one its catch-up would start."""
    wf_id = q2c_workflow_id(settings.crm, opp)
    handle = client.get_workflow_handle(wf_id, result_type=QuoteToCashResult)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            await handle.describe()
            how = "portal's webhook" if settings.crm == "hubspot" else "CRM's callout"
            say(f"  ✓ the {how} started {wf_id}")
            return handle
        except RPCError:
            await asyncio.sleep(0.5)
    say("  … no callout arrived: starting quote-to-cash as the catch-up would")
    return await client.start_workflow(
        Q2C,
        QuoteToCashInput(
            crm=settings.crm, billing=settings.billing, opportunity_id=opp, trigger="catch_up"
        ),
        id=wf_id,
        task_queue=settings.task_queue,
        result_type=QuoteToCashResult,
    )


async def _until(probe: Any, ok: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
            if ok(last):
                return last
        except RPCError:
            pass
        except Exception as exc:  # a query before the first workflow task
            if "not found" not in str(exc).lower() and "query" not in str(exc).lower():
                raise
        await asyncio.sleep(0.5)
    raise CliError(f"timed out waiting for {what} (last seen: {str(last)[:200]})")

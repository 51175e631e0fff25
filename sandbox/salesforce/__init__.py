"""A stateful Salesforce org: REST API (what ``simple-salesforce`` 1.12 calls), OAuth 2.0 and a
Flow-HTTP-callout-style webhook. Facts: ``docs/reference/crm-llm-apis.md`` §0 and §1.

Constructor::

    SalesforceEmulator(client_id="revbridge-local", client_secret="local-secret",
                       token_ttl_s=3600, daily_api_limit=15000, webhook_targets=(),
                       jwt_public_key_pem=None, limits=True, clock=time.time)

The daily allowance is on by default at a Developer Edition org's 15,000 requests, counted over a
rolling 24 hours as Salesforce counts it (one per REST call; a ``/composite`` call is one);
``limits=False`` never refuses (a focused unit test). Field lengths are always enforced: a
standard ``Description`` holds 32,000 characters, longer is 400 ``STRING_TOO_LONG``.

HTTP surface (plain HTTP; the client rewrites its hard-coded ``https://``, see the tests):

- ``POST /services/oauth2/token``: ``client_credentials`` (Basic header or body) and JWT bearer
  (``oauth.py``). ``instance_url`` is ``https://<host:port>`` as a real org answers.
- ``/services/data/vXX.X/`` (any version, ``Authorization: Bearer <token>``; 401
  ``INVALID_SESSION_ID`` otherwise; every answer carries ``Sforce-Limit-Info: api-usage=N/M``; over
  the daily limit 403 ``REQUEST_LIMIT_EXCEEDED``): ``sobjects`` (global describe),
  ``sobjects/{Obj}`` (metadata, POST create), ``sobjects/{Obj}/describe``, ``sobjects/{Obj}/{id}``
  (GET ``?fields=``, PATCH, DELETE), ``sobjects/{Obj}/{ExtField}/{value}`` (GET, PATCH upsert
  201/200 with ``created``, 300 on several matches, DELETE), ``sobjects/{Obj}/updated|deleted``,
  ``query`` / ``queryAll`` (``soql.py``; pages of 2000 or ``Sforce-Query-Options: batchSize=N``,
  ``nextRecordsUrl`` = ``/services/data/vXX.X/query/<locator>-<offset>``), ``composite/sobjects``
  (POST create, PATCH update, DELETE ``?ids=``, ``/{Obj}`` retrieve, ``/{Obj}/{ExtField}`` PATCH
  upsert; ``allOrNone`` rolls everything back), ``composite`` (up to 25 subrequests, at most 5
  of them queries or collections; ``@{ref.id}`` / ``@{ref.records[0].Id}`` references;
  ``allOrNone`` rolls back and answers the others 400 ``PROCESSING_HALTED``; one API call),
  ``limits``.
- Errors are arrays ``[{"message", "errorCode", "fields"}]``; SaveResults use ``statusCode``.
- Control plane (besides the framework's ``/_sandbox/*``): ``POST /_sandbox/salesforce/expire_tokens``,
  ``GET|POST /_sandbox/salesforce/api_usage`` (``{"used": n}`` sets the counter),
  ``POST /_sandbox/salesforce/org`` (``{"drop_fields": ["Case.Billing_Context__c"],
  "drop_objects": ["AI_Agent_Log__c"], "access": {"Case": {"create": false}},
  "picklists": {"Account.Churn_Level__c": ["Low", "High"]}}``: an org not yet
  set up for RevBridge, see :meth:`SalesforceEmulator.configure_org`),
  ``GET /_sandbox/salesforce/records/{Obj}[?include_deleted=true]``.

Objects: Account, Contact, Opportunity, Case, Task, User (4 seeded users; the integration user
``integration@revbridge.local`` owns what the API creates) and ``AI_Agent_Log__c`` (schema.py),
plus the products feature: Product2, Pricebook2 (a seeded, active ``Standard Price Book`` with
``IsStandard = true``), PricebookEntry, OpportunityLineItem (``ProductCode``, ``ListPrice``,
``Subtotal``, ``TotalPrice`` derived; Amount roll-up onto the opportunity) and
OpportunityContactRole (one primary per opportunity). The org's rules for them, with
Salesforce's error codes (``FIELD_INTEGRITY_EXCEPTION``, ``STANDARD_PRICE_NOT_DEFINED``, ...),
live in ``automation.py``. RevBridge's custom fields: Account ``Billing_*``, ``MRR__c``,
``Churn_Risk__c`` / ``Churn_Level__c`` / ``Churn_Reasons__c`` / ``Churn_Narrative__c`` /
``Churn_Scored_At__c``; Opportunity ``Term_Months__c``, ``Payment_Terms__c`` (Net 15/30/45/60),
``Start_Date__c``, ``Billing_Status__c``, ``Billing_Subscription_Id__c``, ``MRR__c``; Case
``Billing_Context__c`` (32,768). ``seed()`` adds objects, fields and records (see
:meth:`SalesforceEmulator.seed`).

Change notifications (what a record-triggered Flow with an async HTTP callout through a Named
Credential would send). When a Case is created, or an Opportunity's ``StageName`` becomes
``Closed Won`` (on create or update), every webhook target gets ``POST`` with the target's headers
(e.g. a shared-secret header) and this JSON body::

    {"event": "case_created" | "opportunity_closed_won", "eventId": "<uuid4>",
     "sobject": "Case", "recordId": "500...", "record": {<every field, API format>},
     "orgId": "00D...", "occurredAt": "2024-05-01T12:00:00.000+0000"}

Changes rolled back (``allOrNone``), seeded records and the org's own roll-up writes send
nothing; a later update of a won opportunity is no second "won". The framework retries non-2xx
answers (a real Flow callout does not; see reference §1.9).
"""

from .emulator import INTEGRATION_USERNAME, SalesforceEmulator

__all__ = ["INTEGRATION_USERNAME", "SalesforceEmulator"]

"""The vendor sandboxes in a process of their own, so the ledger's timestamps are taken where no
worker thread competes for the interpreter (what a vendor's limiter sees is arrival time).
Prints the URLs as one JSON line, serves until stdin closes.

    python -m tests.limits.sandbox_process
"""

from __future__ import annotations

import json
import sys

from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from tests.pairs import CB_KEY, HS_SECRET, HS_TOKEN, SF_ID, SF_SECRET, STRIPE_KEY, STRIPE_SECRET


def main() -> None:
    emulators = {
        # the pacing tests set their own vendor rate: the test-site limit (150/min) is off
        ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None): 0,
        SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET): 0,
        StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET): 0,
        HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET, rate_limit_per_10s=5000): 0,
    }
    with ServerThread(emulators) as thread:
        print(json.dumps(thread.urls), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()

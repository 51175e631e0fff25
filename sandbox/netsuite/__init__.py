"""A stateful NetSuite (SuiteTalk REST web services) emulator for revenue postings: journal
entries (create, upsert by external ID, read), SuiteQL with collection paging, lookups of
accounts, subsidiaries, currencies and accounting periods, TBA (OAuth 1.0a HMAC-SHA256, realm =
account ID) and OAuth 2.0 client-credentials auth, NetSuite's error body, the account's
concurrency limit (429), and the framework's ledger and faults. See :mod:`.emulator`."""

from .auth import M2mClient, TbaCredentials
from .emulator import NetSuiteEmulator

__all__ = ["M2mClient", "NetSuiteEmulator", "TbaCredentials"]

"""The chaos suite (issue 14) and the process-level stack it and tests/ops run against.

Every piece is a separate OS process on 127.0.0.1 — the Temporal dev server on a file database,
the vendor sandbox, one or more workers and webhook services — so a SIGKILL is a real crash.
``python -m chaos`` (``make chaos``) runs every scenario on every pair; docs/reliability.md has
the figures of the last run.
"""

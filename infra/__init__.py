"""Process plumbing shared by the worker, the webhook service and the CLI: the Temporal
connection, Temporal Schedules, telemetry (traces, metrics, logs). No business logic."""

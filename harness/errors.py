"""The one error the harness raises: a sandbox that did not do what a scenario needed."""


class HarnessError(Exception):
    """Shown by the CLI as one line, exit code 2 (like ``cli.config.CliError``)."""

"""One rejection type for the whole service: a status code and a one-line reason."""

from __future__ import annotations


class Rejected(Exception):
    def __init__(self, status: int, reason: str, code: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.code = code  # stable label for logs and metrics

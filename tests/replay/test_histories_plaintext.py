"""Committed histories carry plaintext payloads: one recorded under a key (a test session's, or a
dev stack's `.revbridge/payload-keys`) could never be replayed by CI, which has neither key.
`make histories` records with encryption off; this catches a history recorded another way."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from infra.codec import ENCODING

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*.json"))


def _encodings(node: object) -> set[bytes]:
    found: set[bytes] = set()
    if isinstance(node, dict):
        meta = node.get("metadata")
        if isinstance(meta, dict) and "encoding" in meta:
            found.add(base64.b64decode(meta["encoding"]))
        for value in node.values():
            found |= _encodings(value)
    elif isinstance(node, list):
        for value in node:
            found |= _encodings(value)
    return found


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_a_committed_history_is_not_encrypted(path: Path) -> None:
    encodings = _encodings(json.loads(path.read_text(encoding="utf-8")))
    assert encodings, "no payload found: not a history?"
    assert ENCODING not in encodings, f"{path.name} was recorded with payload encryption on"

"""Token estimates and the prompt cache (reference §3.2 "Prompt caching").

Tokens are estimated, deterministically, at about four characters per token (a text block counts
its text; any other block, tool definition or tool input counts its canonical JSON). The numbers
are stable across runs, so tests can compare them, but they are not Claude's tokenizer.

The cache follows the API's model: the prompt is a sequence of blocks in the order tools → system
→ messages; a block carrying ``cache_control`` (or the last block, with top-level
``cache_control``) is a breakpoint, and the prefix up to it is cached for its ``ttl`` (5 minutes by
default, refreshed on every hit). A request reads the longest cached prefix among its breakpoints
and writes the rest up to its last breakpoint. Usage then reports ``cache_read_input_tokens``,
``cache_creation_input_tokens`` and ``input_tokens`` for the uncached remainder; the three add up
to the whole prompt. The API only caches prefixes above a per-model minimum (1,024 tokens for
Sonnet 4.5, 4,096 for Haiku 4.5 and Opus 4.5, per the docs); ``min_tokens`` emulates that and is
0 by default so short test prompts cache too. Hits are looked up at breakpoints only (the API also
looks a few blocks back).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .validation import MessagesRequest

CHARS_PER_TOKEN = 4
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


@dataclass(frozen=True)
class Segment:
    """One cacheable unit of the prompt: a tool definition, a system block or a message block."""

    key: str  # canonical JSON without cache_control (what the cache compares)
    tokens: int
    cache_control: dict[str, Any] | None = None

    @property
    def ttl(self) -> str:
        return (self.cache_control or {}).get("ttl", "5m")


def _segment(kind: str, block: dict[str, Any], cache_control: dict[str, Any] | None) -> Segment:
    bare = {k: v for k, v in block.items() if k != "cache_control"}
    if bare.get("type") == "text" and isinstance(bare.get("text"), str):
        tokens = max(1, estimate_tokens(bare["text"]))
    else:
        tokens = max(1, estimate_tokens(canonical(bare)))
    return Segment(key=f"{kind}:{canonical(bare)}", tokens=tokens, cache_control=cache_control)


def segments(req: MessagesRequest) -> list[Segment]:
    out = [_segment("tool", t, t.get("cache_control")) for t in req.tools]
    out += [_segment("system", b, b.get("cache_control")) for b in req.system]
    for msg in req.messages:
        content = msg["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks:
            if isinstance(content, str) and not content:
                continue
            out.append(_segment(msg["role"], block, block.get("cache_control")))
    if req.cache_control is not None and out and out[-1].cache_control is None:
        last = out[-1]
        out[-1] = Segment(key=last.key, tokens=last.tokens, cache_control=req.cache_control)
    return out


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int = 0
    cache_read_input_tokens: int = 0
    creation_by_ttl: dict[str, int] = field(default_factory=lambda: {"5m": 0, "1h": 0})

    @property
    def cache_creation_input_tokens(self) -> int:
        return sum(self.creation_by_ttl.values())


class PromptCache:
    """Cached prompt prefixes per model, each with an expiry on ``clock`` (seconds)."""

    def __init__(self, min_tokens: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_tokens = min_tokens
        self.clock = clock
        self.entries: dict[str, float] = {}

    def clear(self) -> None:
        self.entries.clear()

    def account(self, model: str, segs: list[Segment]) -> CacheUsage:
        """Look the prompt up, write what is new, and say how its tokens were served."""
        total = sum(s.tokens for s in segs)
        digest = hashlib.sha256(model.encode())
        hashes: list[str] = []
        cumulative: list[int] = []
        running = 0
        for seg in segs:
            digest.update(b"\x00" + seg.key.encode())
            hashes.append(digest.copy().hexdigest())
            running += seg.tokens
            cumulative.append(running)
        eligible = [
            i for i, s in enumerate(segs) if s.cache_control and cumulative[i] >= self.min_tokens
        ]
        if not eligible:
            return CacheUsage(input_tokens=total)
        now = self.clock()
        hit = next((i for i in reversed(eligible) if self.entries.get(hashes[i], 0.0) > now), None)
        read = cumulative[hit] if hit is not None else 0
        if hit is not None:
            self.entries[hashes[hit]] = now + TTL_SECONDS[segs[hit].ttl]  # a hit refreshes
        creation = {"5m": 0, "1h": 0}
        previous = read
        for i in eligible:
            if hit is not None and i <= hit:
                continue
            creation[segs[i].ttl] += cumulative[i] - previous
            previous = cumulative[i]
            self.entries[hashes[i]] = now + TTL_SECONDS[segs[i].ttl]
        return CacheUsage(
            input_tokens=total - read - sum(creation.values()),
            cache_read_input_tokens=read,
            creation_by_ttl=creation,
        )

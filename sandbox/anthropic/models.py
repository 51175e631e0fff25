"""The model catalogue the emulator serves: only real model IDs, each with its output limit.

The IDs are those the installed ``anthropic`` SDK (2.17) names in ``types/model.py`` (the
reference, crm-llm-apis.md §3, gives no list of its own), with its ``_data/deprecated_models.py``
dates: ``claude-mythos-preview`` reached end-of-life on 2026-06-30 and is retired (inference
answers 404, as the API does for a retired model); ``claude-opus-4-5`` is deprecated, still served.

``max_tokens`` is the largest ``max_tokens`` a request may ask of the model. Documented: 64,000
for Claude Opus 4.5, Sonnet 4.6 and Haiku 4.5, 128,000 for Opus 4.6. For the later models no
figure was at hand: the family's (Opus/Fable/Mythos 128,000, Sonnet/Haiku 64,000) is assumed —
the real account's ``GET /v1/models/{id}`` says, and ``connectors/llm_preflight.py`` reads it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    id: str
    display_name: str
    max_tokens: int
    max_input_tokens: int = 200_000
    created_at: str = "2026-01-01T00:00:00Z"
    lifecycle: str = "active"  # active | deprecated | retired

    @property
    def served(self) -> bool:
        return self.lifecycle != "retired"

    def info(self) -> dict[str, Any]:
        """The Models API's ``ModelInfo`` body."""
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
            "lifecycle": self.lifecycle,
            "max_input_tokens": self.max_input_tokens,
            "max_tokens": self.max_tokens,
        }


def _spec(model_id: str, max_tokens: int, lifecycle: str = "active", **kw: Any) -> ModelSpec:
    words = model_id.removeprefix("claude-").split("-")
    family = words[0].capitalize()
    version = ".".join(w for w in words[1:] if w.isdigit() and len(w) < 3)
    name = f"Claude {family} {version}".strip() if version else f"Claude {family}"
    if "preview" in words:
        name += " Preview"
    return ModelSpec(model_id, name, max_tokens, lifecycle=lifecycle, **kw)


#: newest first, as the SDK lists them
CATALOGUE: dict[str, ModelSpec] = {
    s.id: s
    for s in (
        _spec("claude-fable-5-2", 128_000),
        _spec("claude-mythos-5-2", 128_000),
        _spec("claude-haiku-5-5", 64_000),
        _spec("claude-sonnet-5-5", 64_000, max_input_tokens=1_000_000),
        _spec("claude-fable-5-1", 128_000),
        _spec("claude-opus-5-5", 128_000),
        _spec("claude-mythos-5-1", 128_000),
        _spec("claude-sonnet-5", 64_000, max_input_tokens=1_000_000),
        _spec("claude-fable-5", 128_000),
        _spec("claude-mythos-5", 128_000),
        _spec("claude-opus-5", 128_000),
        _spec("claude-opus-4-8", 128_000),
        _spec("claude-opus-4-7", 128_000),
        _spec("claude-mythos-preview", 128_000, lifecycle="retired"),
        _spec("claude-opus-4-6", 128_000, max_input_tokens=1_000_000),
        _spec("claude-sonnet-4-6", 64_000, max_input_tokens=1_000_000),
        _spec("claude-haiku-4-5", 64_000),
        _spec("claude-haiku-4-5-20251001", 64_000),
        _spec("claude-opus-4-5", 64_000, lifecycle="deprecated"),
        _spec("claude-opus-4-5-20251101", 64_000, lifecycle="deprecated"),
    )
}

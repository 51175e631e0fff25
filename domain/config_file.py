"""Reading a reviewable policy file (``policies/*.yaml``) into a model, with the one-line errors
a person fixing the file needs: which file, where in it, what is wrong — never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_model(path: Path, model: type[M], error: type[Exception], *, key: str | None = None) -> M:
    """``model`` from the YAML at ``path`` (from its ``key`` section when given); any problem is
    ``error`` with one line: ``cannot read …``, ``… is not valid YAML: …`` or
    ``<file>: <where>: <what>``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{path.name} is not valid YAML: {first}") from None
    if key is not None:
        raw = raw.get(key) if isinstance(raw, dict) else None
    elif raw is None:
        raw = {}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first_error = exc.errors()[0]
        where = ".".join(str(p) for p in ((key,) if key else ()) + tuple(first_error["loc"]))
        raise error(f"{path.name}: {where or 'top level'}: {first_error['msg']}") from None

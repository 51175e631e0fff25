"""workers/bytecode.py: the worker compiles our packages where Python would not write bytecode
(the workflow sandbox re-imports them per workflow instance), and leaves them alone otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from workers import bytecode


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "story.py").write_text("X = 1\n")
    monkeypatch.setattr(bytecode, "ROOT", tmp_path)
    monkeypatch.setattr(bytecode, "PACKAGES", ("workflows", "missing"))
    return tmp_path


def compiled(tree: Path) -> list[str]:
    return [p.name for p in (tree / "workflows").glob("__pycache__/story.*.pyc")]


def test_compiled_when_the_interpreter_may_not_write_bytecode(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    bytecode.compile_sources()
    assert len(compiled(tree)) == 1


def test_left_alone_when_python_writes_its_own(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    bytecode.compile_sources()
    assert compiled(tree) == []
    bytecode.compile_sources(always=True)
    assert len(compiled(tree)) == 1

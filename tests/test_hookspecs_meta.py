"""The platform stays honest: every hook spec is documented and has a ``test_hook_<name>``.

A test for hook ``X`` is a function named ``test_hook_X`` anywhere under ``tests/`` or
``plugins/`` (a plugin package testing the hook counts too).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from nexus_aio import hookspecs

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".venv", "__pycache__", "build", "dist"}


def hook_specs() -> list[str]:
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, marker)
    )


def hook_test_names() -> set[str]:
    pattern = re.compile(r"^\s*(?:async\s+)?def\s+(test_hook_\w+)\s*\(", re.MULTILINE)
    found: set[str] = set()
    for base in (ROOT / "tests", ROOT / "plugins"):
        for path in base.rglob("*.py"):
            if SKIP_DIRS.intersection(path.parts) or any(
                p.endswith(".egg-info") for p in path.parts
            ):
                continue
            found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


HOOKS = hook_specs()


def test_hookspecs_are_found():
    assert "register_routes" in HOOKS and "openapi_spec" in HOOKS
    assert len(HOOKS) >= 12


@pytest.mark.parametrize("name", HOOKS)
def test_hook_spec_has_a_docstring(name):
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and len(doc) > 20, f"hook spec {name} needs a docstring documenting it"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_spec_has_a_test(name):
    assert f"test_hook_{name}" in hook_test_names(), (
        f"hook {name} has no test: write a test named test_hook_{name} under tests/ or plugins/"
    )

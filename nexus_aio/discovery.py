"""Finding workflows in files and apps: ``--workflows DIR`` and ``--app MODULE:ATTR``.

A workflow file contributes, in this order of preference:
1. a ``register(app)`` function, called with the ``Nexus``;
2. a ``WORKFLOWS`` mapping of name -> function or ``Workflow``;
3. otherwise every module-level ``Workflow`` (by its name) and every public function defined
   in the file itself (names starting with ``_`` and imported functions are skipped).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from nexus_aio.errors import ConfigurationError
from nexus_aio.nexus import Nexus
from nexus_aio.workflows.workflow import Workflow


def register_module(app: Nexus, module: ModuleType) -> list[str]:
    before = set(app.workflows)
    register = getattr(module, "register", None)
    if callable(register):
        register(app)
    elif isinstance(getattr(module, "WORKFLOWS", None), dict):
        for name, target in module.WORKFLOWS.items():
            app.register(name, target)
    else:
        for attr, value in vars(module).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, Workflow):
                app.register(value.name, value)
            elif inspect.isfunction(value) and value.__module__ == module.__name__:
                app.register(attr, value)
    return sorted(set(app.workflows) - before)


def load_directory(app: Nexus, directory: str | os.PathLike[str]) -> list[str]:
    """Import each ``*.py`` in ``directory`` (not starting with ``_``); register what it holds."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigurationError(f"Workflow directory {str(path)!r} does not exist")
    names: list[str] = []
    for file in sorted(path.glob("*.py")):
        if file.name.startswith("_"):
            continue
        modname = f"nexus_workflows_{file.stem}"
        spec = importlib.util.spec_from_file_location(modname, file)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigurationError(f"Could not import workflow file {file}: {exc}") from exc
        names += register_module(app, module)
    return names


def load_examples(app: Nexus) -> list[str]:
    from nexus_aio import examples

    names: list[str] = []
    for info in pkgutil.iter_modules(examples.__path__):
        module = importlib.import_module(f"{examples.__name__}.{info.name}")
        names += register_module(app, module)
    return names


def load_app(target: str) -> Nexus:
    """``MODULE:ATTR`` (ATTR a ``Nexus`` or a factory returning one), imported like uvicorn does."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise ConfigurationError(f"--app expects MODULE:ATTR, got {target!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"Could not import {module_name!r}: {exc}") from exc
    if not attr:
        candidates = [v for v in vars(module).values() if isinstance(v, Nexus)]
        if len(candidates) != 1:
            raise ConfigurationError(
                f"{module_name} has {len(candidates)} Nexus apps; name one as {module_name}:ATTR"
            )
        return candidates[0]
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name} has no attribute {attr!r}") from None
    if not isinstance(obj, Nexus) and callable(obj):
        obj = obj()
    if not isinstance(obj, Nexus):
        raise ConfigurationError(f"{target} is a {type(obj).__name__}, not a Nexus app")
    return obj

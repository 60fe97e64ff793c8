"""Skip these tests where the plugin is not installed (core-only CI)."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("nexus_aio_batch") is None:
    collect_ignore_glob = ["test_*.py"]

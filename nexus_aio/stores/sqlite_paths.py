"""Preparing a SQLite database path, shared by the SQLite stores."""

from __future__ import annotations

import os

from nexus_aio.errors import StoreUnavailable


def prepare_parent_directory(path: str, label: str) -> None:
    """Create the database's directory, or say clearly why it cannot be used.

    SQLite's own message ("unable to open database file") would not say why; WAL also needs to
    create its -wal and -shm files next to the database, so the directory must be writable.
    """
    if path == ":memory:" or path.startswith("file:"):
        return
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(
            f"{label} at {path} cannot be opened: cannot create directory"
            f" {parent}: {exc.strerror or exc}"
        ) from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreUnavailable(
            f"{label} at {path} cannot be opened: directory {parent} is not writable"
        )

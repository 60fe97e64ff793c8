"""``File``: an uploaded file as a workflow receives it, and what an execution record keeps of it.

A parameter annotated ``File`` (or ``File | None``, ``list[File]``) is a file input: clients send
it as a part of a ``multipart/form-data`` execute request, the server streams the part to a
temporary file (hashing it on the way) and the workflow gets a ``File`` pointing at it. The file
lives until the run ends, then is deleted. JSON cannot produce a ``File``, so file inputs are
only ever filled from multipart requests.
"""

from __future__ import annotations

import asyncio
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from nexus_aio.workflows.hints import is_union, strip_annotation

__all__ = ["File", "file_input_kind", "has_files", "recorded_inputs"]


@dataclass(frozen=True, slots=True)
class File:
    """An uploaded file: the client's ``filename`` and ``content_type``, its ``size`` in bytes
    and ``sha256`` (hex), and the ``path`` of the temporary file holding it (deleted when the
    run ends: copy it elsewhere to keep it)."""

    filename: str
    content_type: str
    size: int
    path: Path
    sha256: str

    async def read(self) -> bytes:
        """The whole content, read in a thread (off the event loop)."""
        return await asyncio.to_thread(self.path.read_bytes)

    def open(self) -> BinaryIO:
        """The file opened for binary reading (blocking: use it in sync workflows or a thread)."""
        return self.path.open("rb")

    def metadata(self) -> dict[str, Any]:
        """What an execution record keeps of the file instead of its content or path."""
        return {
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
        }


def file_input_kind(annotation: Any) -> str | None:
    """``"one"`` for ``File`` (or ``File | None``), ``"list"`` for ``list[File]``, else None."""
    annotation, _ = strip_annotation(annotation)
    if annotation is File:
        return "one"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if is_union(origin):
        kinds = {file_input_kind(a) for a in args if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if origin is list and args and strip_annotation(args[0])[0] is File:
        return "list"
    return None


def has_files(inputs: Any) -> bool:
    """Whether validated ``inputs`` (input name -> value) hold a ``File`` (a ``list[File]``
    input holds nothing else, so its first item tells)."""
    return isinstance(inputs, dict) and any(
        isinstance(v, File) or (isinstance(v, list) and bool(v) and isinstance(v[0], File))
        for v in inputs.values()
    )


def recorded_inputs(inputs: Any) -> Any:
    """``inputs`` as an execution record stores them: each ``File`` (alone or in a list) as its
    metadata, so records never hold a path or content."""
    if not has_files(inputs):
        return inputs
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, File):
            value = value.metadata()
        elif isinstance(value, list):
            value = [v.metadata() if isinstance(v, File) else v for v in value]
        out[key] = value
    return out

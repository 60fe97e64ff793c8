"""The ``Context`` a workflow can ask for by annotating a parameter with it."""

from __future__ import annotations

from typing import Any, Protocol


class EventSink(Protocol):
    def push(self, event: str, data: Any) -> None: ...


class _DropSink:
    def push(self, event: str, data: Any) -> None:
        pass


DROP_SINK: EventSink = _DropSink()


class Context:
    """What a running workflow knows about its execution.

    Injected, never an input: annotate a parameter with ``Context`` to receive it.
    ``session`` is the session's state; changes are saved when the execution succeeds and
    discarded when it fails. ``emit`` and ``progress`` feed the execution's event log, which
    SSE clients see live.
    """

    __slots__ = (
        "_sink",
        "actor",
        "execution_id",
        "metadata",
        "node",
        "request_id",
        "session",
        "workflow",
    )

    def __init__(
        self,
        execution_id: str,
        workflow: str,
        *,
        session: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        actor: Any = None,
        request_id: str | None = None,
        sink: EventSink = DROP_SINK,
        session_id: str | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.workflow = workflow
        self.session: dict[str, Any] = {} if session is None else session
        self.metadata: dict[str, Any] = {} if metadata is None else metadata
        self.actor = actor
        self.request_id = request_id
        self.node: str | None = None
        self._sink = sink

    def emit(self, event: str, data: Any = None) -> None:
        """Send a custom event (``event: <event>`` on the SSE stream)."""
        if not isinstance(event, str) or not event or "\n" in event or "\r" in event:
            raise ValueError("event must be a non-empty single-line string")
        self._sink.push(event, data)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress between 0.0 and 1.0 (``event: progress``)."""
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("progress fraction must be between 0.0 and 1.0")
        data: dict[str, Any] = {"fraction": fraction, "message": message}
        if self.node is not None:
            data["node"] = self.node
        self._sink.push("progress", data)

    def __repr__(self) -> str:
        return f"<Context {self.workflow} {self.execution_id}>"

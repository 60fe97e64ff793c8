"""The MCP channel: the SDK's low-level ``Server`` whose tools run through the execution service.

Every tool call is one more caller of ``nexus.service`` (a ``RunRequest``), so MCP runs are
recorded in ``/executions`` and get the same checks, sessions, idempotency, timeouts and queue
as HTTP. The SDK parses and answers the protocol; this module only maps tools to runs.

Who calls comes from the transport: over HTTP the aiohttp request (its actor, resolved by the
core middleware, and its rate-limit client) travels in the ASGI scope under :data:`CALLER`;
over stdio there is no request (the local user, trusted like ``python -m nexus_aio run``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mcp.types as types
import orjson
from aiohttp import web
from mcp.server import Server, ServerRequestContext
from mcp.server.connection import allowed_log_levels

from nexus_aio.envelope import new_execution_id
from nexus_aio.errors import (
    Conflict,
    ExecutionNotFound,
    Forbidden,
    NexusError,
    Unauthorized,
    ValidationError,
)
from nexus_aio.execution.idempotency import Outcome
from nexus_aio.execution.runtime import actor_id
from nexus_aio.execution.service import RunRequest
from nexus_aio.stores.executions import TERMINAL, ExecutionRecord
from nexus_aio.web.keys import ACTOR, REQUEST_ID
from nexus_aio.workflows.jsontypes import json_type_name

from .tools import (
    CANCEL,
    LIFECYCLE_TOOLS,
    MAX_STATUS_WAIT,
    START,
    STATUS,
    Catalog,
    error_result,
    json_result,
)

if TYPE_CHECKING:
    from nexus_aio import Nexus
    from nexus_aio.execution.service import ExecutionService

__all__ = ["CALLER", "Caller", "McpChannel"]

log = logging.getLogger("nexus_aio.mcp")

CALLER = "nexus_aio.mcp.caller"  # ASGI scope key holding the Caller of an HTTP request
MAX_KEY_LENGTH = 255
_LOG_LEVEL: types.LoggingLevel = "info"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a call: the actor, the request id, and the aiohttp request over HTTP."""

    actor: Any = None
    request_id: str | None = None
    request: web.Request | None = None

    @classmethod
    def of(cls, request: web.Request) -> Caller:
        return cls(request.get(ACTOR), request.get(REQUEST_ID), request)


LOCAL = Caller()


def _caller(ctx: ServerRequestContext[Any, Any]) -> Caller:
    scope = getattr(ctx.request, "scope", None)
    caller = scope.get(CALLER) if isinstance(scope, dict) else None
    return caller if isinstance(caller, Caller) else LOCAL


def _invalid(field: str, expected: str, value: Any) -> ValidationError:
    return ValidationError(
        f"Invalid argument: {field} must be {expected}",
        details={"field": field, "expected": expected, "received": json_type_name(value)},
    )


def _string(args: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = args.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(field, "a non-empty string", value)
    return value


def _only(args: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(args.keys() - set(allowed))
    if unknown:
        raise ValidationError(
            f"Unknown argument: {unknown[0]} (allowed: {', '.join(allowed)})",
            details={"field": unknown[0], "expected": "nothing", "received": "unknown field"},
        )


class McpChannel:
    """The tools of one app and the SDK server that serves them (HTTP and stdio alike)."""

    def __init__(self, nexus: Nexus) -> None:
        self.nexus = nexus
        self.catalog = Catalog.build(nexus)
        self.needs_permission = nexus.hooks.implemented("permission_allowed", builtin=False)
        self.limit_check = _workflow_limit_check()
        from nexus_aio.version import __version__

        self.server: Server[Any] = Server(
            "nexus_aio",
            version=__version__,
            instructions="Each workflow is a tool; nexus.start, nexus.status and nexus.cancel "
            "run long workflows in the background.",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    @property
    def service(self) -> ExecutionService:
        service = self.nexus.service
        if service is None:
            raise NexusError("The execution service is not open")
        return service

    # -- checks ---------------------------------------------------------------------------
    async def allowed(self, caller: Caller, action: str, resource: str | None) -> bool:
        if not self.needs_permission:
            return True
        return bool(await self.nexus.hooks.permission_allowed(caller.actor, action, resource))

    async def check(self, caller: Caller, action: str, resource: str | None) -> None:
        """``check_permission`` for a tool call: 401 type without an actor, else 403 type."""
        if await self.allowed(caller, action, resource):
            return
        if caller.actor is None:
            raise Unauthorized("Authentication required")
        raise Forbidden(
            f"Not allowed to {action} {resource or ''}".strip(),
            details={"action": action, "resource": resource},
        )

    async def limit(self, caller: Caller, workflow: str) -> None:
        """The per-workflow rate limit, one token per tool call (HTTP callers only)."""
        if self.limit_check is not None and caller.request is not None:
            await self.limit_check(caller.request, workflow)

    # -- tools/list -------------------------------------------------------------------------
    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """The workflows the caller may execute, then the lifecycle tools."""
        caller = _caller(ctx)
        tools = [
            tool
            for key, tool in self.catalog.tools.items()
            if await self.allowed(caller, "execute", self.catalog.workflows[key])
        ]
        return types.ListToolsResult(tools=[*tools, *LIFECYCLE_TOOLS])

    # -- tools/call -------------------------------------------------------------------------
    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        caller = _caller(ctx)
        args = dict(params.arguments or {})
        name = params.name
        try:
            if name == START:
                return json_result(await self.start(caller, args))
            if name == STATUS:
                return json_result(await self.status(caller, args))
            if name == CANCEL:
                return json_result(await self.cancel(caller, args))
        except NexusError as exc:
            return error_result(exc, getattr(exc, "workflow_id", None))
        workflow = self.catalog.workflows.get(name)
        if workflow is None:
            return error_result(
                {
                    "success": False,
                    "error": {
                        "type": "WorkflowNotFound",
                        "message": f"Unknown tool {name!r}",
                        "details": {"tool": name},
                    },
                    "workflow_id": None,
                }
            )
        return await self.run_workflow(ctx, caller, workflow, args)

    async def run_workflow(
        self, ctx: ServerRequestContext[Any, Any], caller: Caller, workflow: str, args: Any
    ) -> types.CallToolResult:
        """One run in stream mode, its event log followed: progress and custom events go to
        the client as notifications, the closing event is the tool's answer."""
        execution_id: str | None = None
        try:
            await self.check(caller, "execute", workflow)
            await self.limit(caller, workflow)
            execution_id = new_execution_id()
            run = RunRequest(
                workflow, args, "stream", None, None, caller.actor, caller.request_id, execution_id
            )
            live = await self.service.stream(run)
        except NexusError as exc:
            return error_result(exc, execution_id)
        try:
            return await self._follow(ctx, workflow, live.log)
        except BaseException:  # the client left (or the server stops): nobody reads the answer
            await asyncio.shield(self.service.cancel(execution_id))
            raise

    async def _follow(
        self, ctx: ServerRequestContext[Any, Any], workflow: str, events: Any
    ) -> types.CallToolResult:
        logs = _LOG_LEVEL in allowed_log_levels(ctx.protocol_version, ctx.meta)
        async for event in events.follow():
            kind, data = event.type, event.data
            if kind == "complete":
                return json_result(data)
            if kind == "error":
                return error_result(data)
            if kind == "progress":
                await ctx.session.report_progress(
                    float(data.get("fraction", 0.0)), 1.0, data.get("message")
                )
            elif kind != "start" and logs:
                await _log(ctx, workflow, kind, data)
        raise NexusError("The execution ended without a result")  # pragma: no cover

    # -- lifecycle tools -----------------------------------------------------------------------
    async def start(self, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
        """``nexus.start``: an async run (the queue, ``run_timeout``); idempotent with a key."""
        _only(args, ("workflow", "inputs", "session_id", "idempotency_key"))
        workflow = _string(args, "workflow", required=True)
        assert workflow is not None
        inputs = args.get("inputs", {})
        if inputs is not None and not isinstance(inputs, dict):
            raise _invalid("inputs", "an object", inputs)
        session_id = args.get("session_id")
        if session_id is not None and not isinstance(session_id, str):
            raise _invalid("session_id", "a string", session_id)
        key = _string(args, "idempotency_key", required=False)
        if key is not None and (len(key) > MAX_KEY_LENGTH or not key.isprintable()):
            raise _invalid("idempotency_key", f"1..{MAX_KEY_LENGTH} printable characters", key)
        self.nexus.get_workflow(workflow)  # WorkflowNotFound, as execute says
        await self.check(caller, "execute", workflow)
        await self.limit(caller, workflow)
        run = RunRequest(
            workflow,
            inputs,
            "async",
            session_id,
            None,
            caller.actor,
            caller.request_id,
            new_execution_id(),
        )
        service = self.service

        async def attempt() -> tuple[Outcome, dict[str, Any]]:
            record = await service.submit(run)
            answer = _started(record)
            return Outcome(202, orjson.dumps(answer), record.id), answer

        if key is None:
            return (await attempt())[1]
        fingerprint = hashlib.sha256(
            orjson.dumps(
                {"workflow": workflow, "inputs": inputs, "session_id": session_id},
                option=orjson.OPT_SORT_KEYS,
            )
        ).hexdigest()
        entry, answer = await service.idempotency.once(
            _scoped_key(caller, key), fingerprint, key, attempt, lambda: run.execution_id
        )
        if entry is None:
            return answer
        stored = orjson.loads(entry.body) if entry.body else {"workflow_id": entry.execution_id}
        if entry.status >= 400:
            raise _ReplayedError(stored)
        return {**stored, "replayed": True}

    async def status(self, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
        """``nexus.status``: the record (``GET /executions/{id}``), waiting up to ``wait``."""
        _only(args, ("workflow_id", "wait"))
        await self.check(caller, "read", "executions")
        wait = args.get("wait", 0)
        if (
            isinstance(wait, bool)
            or not isinstance(wait, int | float)
            or not math.isfinite(wait)
            or not 0 <= wait <= MAX_STATUS_WAIT
        ):
            raise _invalid("wait", f"a number of seconds from 0 to {MAX_STATUS_WAIT:g}", wait)
        record = await self._record(caller, args)
        if wait > 0 and record.status not in TERMINAL:
            record = await self.service.wait(record.id, float(wait)) or record
        return record.to_dict()

    async def cancel(self, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
        """``nexus.cancel``: as ``DELETE /executions/{id}`` (a finished run is a Conflict)."""
        _only(args, ("workflow_id",))
        await self.check(caller, "cancel", "executions")
        record = await self._record(caller, args)
        if record.status in TERMINAL:
            raise _finished(record)
        service = self.service
        cancelled = await service.cancel(record.id)
        record = await service.get(record.id) or record
        if record.status in TERMINAL and record.status != "cancelled":
            raise _finished(record)
        if not cancelled and record.status != "cancelled":
            raise Conflict(
                f"Execution {record.id!r} is not running in this server process",
                details={"execution_id": record.id, "status": record.status},
            )
        return record.to_dict()

    async def _record(self, caller: Caller, args: dict[str, Any]) -> ExecutionRecord:
        execution_id = _string(args, "workflow_id", required=True)
        assert execution_id is not None
        record = await self.service.get(execution_id)
        if record is None:
            raise ExecutionNotFound(
                f"Execution {execution_id!r} not found", details={"execution_id": execution_id}
            )
        if record.actor is not None and record.actor != actor_id(caller.actor):
            if caller.actor is None:
                raise Unauthorized("Authentication required for this execution")
            raise Forbidden(
                "This execution belongs to another actor", details={"execution_id": record.id}
            )
        return record


class _ReplayedError(NexusError):
    """A remembered error answer of ``nexus.start``, replayed as it was."""

    def __init__(self, envelope: dict[str, Any]) -> None:
        error = envelope.get("error") or {}
        super().__init__(str(error.get("message", "")), details=error.get("details"))
        self.type = str(error.get("type", "NexusError"))
        self.workflow_id = envelope.get("workflow_id")


def _started(record: ExecutionRecord) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "workflow_id": record.id,
        "name": record.workflow,
        "status": record.status,
    }
    if record.session_id:
        answer["session_id"] = record.session_id
    return answer


def _finished(record: ExecutionRecord) -> Conflict:
    return Conflict(
        f"Execution {record.id!r} already finished ({record.status})",
        details={"execution_id": record.id, "status": record.status},
    )


def _scoped_key(caller: Caller, key: str) -> str:
    """Keys belong to the caller (its actor, else its address) and to this channel."""
    owner = actor_id(caller.actor)
    if owner is not None:
        scope = f"actor:{owner}"
    elif caller.request is not None:
        scope = f"client:{caller.request.remote or ''}"
    else:
        scope = "local"
    return f"{scope}:mcp:{key}"


async def _log(ctx: ServerRequestContext[Any, Any], workflow: str, event: str, data: Any) -> None:
    """A custom event (``ctx.emit``, stream chunks, DAG node events) as a log notification."""
    note = types.LoggingMessageNotification(
        params=types.LoggingMessageNotificationParams(
            level=_LOG_LEVEL,
            logger=f"nexus_aio.{workflow}",
            data={"event": event, "data": orjson.loads(orjson.dumps(data, default=str))},
        )
    )
    await ctx.session.send_notification(note, related_request_id=ctx.request_id)


def _workflow_limit_check() -> Any:
    """The rate limiter's per-workflow check (as the batch plugin uses it)."""
    from nexus_aio.web.ratelimit import check_workflow_limit

    return check_workflow_limit

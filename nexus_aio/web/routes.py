"""The core routes: execute, schema, list, health, plugins."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio.envelope import new_execution_id
from nexus_aio.errors import (
    ExecutionNotFound,
    Forbidden,
    NexusError,
    Unauthorized,
    ValidationError,
)
from nexus_aio.execution.runtime import actor_id, run_cleanups
from nexus_aio.execution.service import ExecutionService, RunRequest
from nexus_aio.version import __version__
from nexus_aio.web.keys import (
    ACTOR,
    EXECUTION_ID,
    REQUEST_ID,
    WORKFLOW_NAME,
    nexus_of,
)
from nexus_aio.web.permissions import check_permission
from nexus_aio.web.request import MULTIPART, read_execute_request
from nexus_aio.web.responses import json_response

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

HEALTH_CHECK_TIMEOUT = 2.0


def make_execute_handler(nexus: Nexus) -> Any:
    """``POST|GET /workflows/{name}/execute``: read the HTTP request, hand it to the execution
    service, render its answer (JSON, SSE or 202)."""
    workflows = nexus.workflows
    needs_permission = nexus.hooks.implemented("permission_allowed", builtin=False)
    # Only the core middleware sets ACTOR, and only when a plugin resolves actors.
    has_actor = nexus.hooks.implemented("actor_from_request")
    from nexus_aio.web.idempotency import IDEMPOTENCY_HEADER, IDEMPOTENT_PASS, handle_idempotent
    from nexus_aio.web.sse import LAST_EVENT_ID, parse_event_id, stream_run

    async def execute(request: web.Request) -> web.StreamResponse:
        resume: tuple[str | None, int] | None = None
        if LAST_EVENT_ID in request.headers:  # a reconnecting EventSource: 400 if malformed
            text = request.headers[LAST_EVENT_ID]
            resume = parse_event_id(text) if text else None
        if IDEMPOTENCY_HEADER in request.headers and IDEMPOTENT_PASS not in request:
            if request.content_type == MULTIPART:  # it would hold the whole upload to hash it
                raise ValidationError(
                    f"{IDEMPOTENCY_HEADER} is not supported with multipart (file upload) requests",
                    details={
                        "field": IDEMPOTENCY_HEADER,
                        "expected": "no Idempotency-Key with multipart/form-data",
                        "received": "Idempotency-Key",
                    },
                )
            return await handle_idempotent(request, execute)
        name = request.match_info["name"]
        workflow = workflows.get(name) or nexus.get_workflow(name)  # WorkflowNotFound
        request[WORKFLOW_NAME] = name
        if needs_permission:
            await check_permission(request, "execute", name)
        execution_id = request[EXECUTION_ID] = (
            request.get(IDEMPOTENT_PASS) if IDEMPOTENCY_HEADER in request.headers else None
        ) or new_execution_id()
        service = nexus.service
        assert service is not None, "execution routes run only while the app serves"
        actor = request[ACTOR] if has_actor else None
        try:
            parsed = await read_execute_request(request, workflow)
        except NexusError as exc:  # the client sees this workflow_id: keep a record of it
            await service.reject(
                execution_id, name, exc, request_id=request[REQUEST_ID], actor=actor
            )
            raise
        if resume is not None and resume[0] is not None and parsed.mode == "stream":
            run_cleanups(parsed.cleanups)
            return await resume_execution(request, service, workflow.name, resume[0], resume[1])
        run = RunRequest(
            name,
            parsed.inputs,
            parsed.mode,
            parsed.session_id,
            parsed.context,
            actor,
            request[REQUEST_ID],
            execution_id,
            parsed.cleanups,
            parsed.webhook,
        )
        headers = {"X-Session-ID": run.session_id} if run.session_id else None
        if run.mode == "sync":
            return json_response(await service.run(run), headers=headers)
        if run.mode == "stream":
            return await stream_run(request, service, run)
        record = await service.submit(run)
        return accepted_response(request, record.id, record.session_id)

    return execute


async def resume_execution(
    request: web.Request,
    service: ExecutionService,
    workflow: str,
    execution_id: str,
    after_seq: int,
) -> web.StreamResponse:
    """An execute stream reconnecting with ``Last-Event-ID: <workflow_id>:<n>`` continues that
    execution (of this workflow, started by the same actor) after event ``n``."""
    from nexus_aio.web.sse import resume_stream

    request[EXECUTION_ID] = execution_id  # its errors name the execution asked for
    record = await service.get(execution_id)
    if record is None or record.workflow != workflow:
        raise ExecutionNotFound(
            f"Execution {execution_id!r} of workflow {workflow!r} not found",
            details={"execution_id": execution_id},
        )
    actor = request.get(ACTOR)
    if record.actor != actor_id(actor):
        if actor is None:
            raise Unauthorized("Authentication required to resume this execution")
        raise Forbidden(
            "Only the actor that started this execution may resume it",
            details={"execution_id": execution_id},
        )
    headers = {"X-Session-ID": record.session_id} if record.session_id else None
    return await resume_stream(request, service, execution_id, after_seq, headers)


def accepted_response(
    request: web.Request, execution_id: str, session_id: str | None
) -> web.Response:
    prefix = nexus_of(request).settings.api_prefix
    base = f"{prefix}/executions/{execution_id}"
    body: dict[str, Any] = {
        "success": True,
        "workflow_id": execution_id,
        "status": "queued",
        "links": {
            "self": base,
            "events": f"{base}/events",
            "wait": f"{base}?wait=30",
            "cancel": base,
        },
    }
    headers = {"Location": base}
    if session_id:
        body["session_id"] = session_id
        headers["X-Session-ID"] = session_id
    return json_response(body, status=202, headers=headers)


async def schema(request: web.Request) -> web.Response:
    nexus = nexus_of(request)
    name = request.match_info["name"]
    request[WORKFLOW_NAME] = name
    workflow = nexus.get_workflow(name)
    await check_permission(request, "read", name)
    body = {
        "name": workflow.name,
        "description": workflow.description,
        "inputs": workflow.schema.describe(),
        "outputs": workflow.outputs,
    }
    return json_response(body)


async def list_workflows(request: web.Request) -> web.Response:
    nexus = nexus_of(request)
    await check_permission(request, "list", None)
    prefix = nexus.settings.api_prefix
    return json_response({name: wf.describe(prefix) for name, wf in nexus.workflows.items()})


async def health(request: web.Request) -> web.Response:
    nexus = nexus_of(request)
    started = nexus.started_at or time.time()
    service = nexus.service
    try:
        active = await service.sessions.count_active() if service is not None else 0
    except NexusError:
        active = None
    return json_response(
        {
            "status": "healthy",
            "version": __version__,
            "uptime": round(time.time() - started, 3),
            "workflows": len(nexus.workflows),
            "active_sessions": active,
        }
    )


async def run_health_components(nexus: Any) -> dict[str, dict[str, Any]]:
    """Every ``health_components`` check, concurrently, each bounded by a timeout."""
    components = nexus.health_components

    async def one(check: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(check(), HEALTH_CHECK_TIMEOUT)
        except TimeoutError:
            result = {"status": "unhealthy", "error": f"timed out after {HEALTH_CHECK_TIMEOUT} s"}
        except NexusError as exc:
            result = {"status": "unhealthy", "error": exc.message}
        except Exception as exc:
            result = {"status": "unhealthy", "error": f"{type(exc).__name__}: {exc}"}
        if not isinstance(result, dict) or result.get("status") not in STATUS_RANK:
            result = {"status": "unhealthy", "error": f"bad health result: {result!r}"}
        result.setdefault("latency_ms", round((time.perf_counter() - started) * 1000, 3))
        return result

    results = await asyncio.gather(*(one(check) for _, check in components))
    return {name: result for (name, _), result in zip(components, results, strict=True)}


STATUS_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def overall_status(components: dict[str, dict[str, Any]]) -> str:
    worst = max((STATUS_RANK[c["status"]] for c in components.values()), default=0)
    return next(k for k, v in STATUS_RANK.items() if v == worst)


def visible_components(
    request: web.Request, components: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The full reports for a caller with credentials (or with auth off); with auth on, an
    anonymous caller (``/health`` is public) sees each component's status only: no paths,
    sizes or memory figures."""
    if request.get(ACTOR) is not None or not nexus_of(request).settings.enable_auth:
        return components
    return {name: {"status": report["status"]} for name, report in components.items()}


async def health_detailed(request: web.Request) -> web.Response:
    nexus = nexus_of(request)
    components = await run_health_components(nexus)
    return json_response(
        {
            "status": overall_status(components),
            "version": __version__,
            "components": visible_components(request, components),
        }
    )


async def list_plugins(request: web.Request) -> web.Response:
    nexus = nexus_of(request)
    await check_permission(request, "read", "plugins")
    return json_response({"plugins": nexus.hooks.describe()})

"""nexus-aio-batch: ``POST /workflows/batch`` runs several workflows in one request.

Each item goes through the same steps as ``POST /workflows/{name}/execute`` (lookup,
permission, rate limit, request checks, validation, the runtime), so an item's entry in
``results`` is the envelope a single execute would have returned, plus ``index``, ``name``
and ``status_code`` (the HTTP status that single execute would have had). A failing item
never fails its neighbours: the batch answers 200 as long as the batch itself is well formed,
and its ``success`` is true only when every item succeeded.

Settings (:data:`SETTINGS`, declared through ``register_settings``: constructor keyword,
``app.api.batch_*``, ``NEXUS_BATCH_*``): ``batch_max_items`` (100) and ``batch_concurrency`` (10).

Items run in request order with at most ``batch_concurrency`` at a time (a fixed set of worker
tasks pulls the next item, so a 100-item batch creates ``batch_concurrency`` tasks, not 100).
Each worker is its own task, which the runtime's per-execution timeout needs: it cancels the
task that runs the workflow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio import Setting, hookimpl
from nexus_aio.envelope import error_envelope, new_execution_id
from nexus_aio.errors import ConfigurationError, NexusError, ValidationError
from nexus_aio.execution.service import RunRequest
from nexus_aio.openapi import error_responses
from nexus_aio.web.keys import ACTOR, REQUEST_ID
from nexus_aio.web.permissions import check_permission
from nexus_aio.web.request import read_json
from nexus_aio.web.responses import json_response
from nexus_aio.workflows.intrange import range_error, wide_int_path
from nexus_aio.workflows.jsontypes import json_type_name

if TYPE_CHECKING:
    from nexus_aio import Nexus

__version__ = "0.1.0"
__all__ = [
    "SETTINGS",
    "BatchItem",
    "make_batch_handler",
    "openapi_spec",
    "parse_batch",
    "register_routes",
    "register_settings",
    "run_bounded",
    "summarize",
]

log = logging.getLogger("nexus_aio.batch")

BATCH_PATH = "/workflows/batch"
BATCH_FIELDS = frozenset({"workflows"})
ITEM_FIELDS = frozenset({"name", "inputs", "session_id", "context"})

SETTINGS = (
    Setting("batch_max_items", int, 100, feature="batch", help="items allowed in one batch"),
    Setting("batch_concurrency", int, 10, feature="batch", help="items of a batch run at once"),
)

LimitCheck = Callable[[web.Request, str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One entry of ``workflows``: its position, the workflow name and the item as sent."""

    index: int
    name: str
    body: dict[str, Any]


# -- parsing: pure functions, no aiohttp -------------------------------------------------------
def _invalid(field: str, expected: str, value: Any, message: str | None = None) -> ValidationError:
    received = json_type_name(value)
    return ValidationError(
        message or f"Invalid batch: {field} must be {expected}",
        details={"field": field, "expected": expected, "received": received},
    )


def parse_batch(body: Any, max_items: int) -> list[BatchItem]:
    """Check the batch's shape; a malformed batch is one 400 for the whole request.

    Only the shape is checked here (an object with a ``workflows`` list of objects that each
    name a workflow); everything an execute request would check is checked per item, so a bad
    item gets its own error envelope instead of failing the batch.
    """
    if not isinstance(body, dict):
        raise _invalid("body", "object", body)
    unknown = sorted(body.keys() - BATCH_FIELDS)
    if unknown:
        raise ValidationError(
            f"Unknown batch field: {unknown[0]} (allowed: workflows)",
            details={"field": unknown[0], "expected": "nothing", "received": "unknown field"},
        )
    if "workflows" not in body:
        raise ValidationError(
            "Invalid batch: the workflows list is missing",
            details={"field": "workflows", "expected": "array", "received": "nothing"},
        )
    workflows = body["workflows"]
    if not isinstance(workflows, list):
        raise _invalid("workflows", "array", workflows)
    if not workflows:
        raise ValidationError(
            "Invalid batch: the workflows list is empty",
            details={"field": "workflows", "expected": "1 or more items", "received": 0},
        )
    if len(workflows) > max_items:
        raise ValidationError(
            f"Batch of {len(workflows)} items exceeds the limit of {max_items}",
            details={
                "field": "workflows",
                "expected": f"at most {max_items} items",
                "received": len(workflows),
                "batch_max_items": max_items,
            },
        )
    return [_parse_item(i, item) for i, item in enumerate(workflows)]


def _parse_item(index: int, item: Any) -> BatchItem:
    field = f"workflows[{index}]"
    if not isinstance(item, dict):
        raise _invalid(field, "object", item)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid(f"{field}.name", "non-empty string", name)
    return BatchItem(index, name, item)


def summarize(results: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    """The batch response body; ``success`` only when every item succeeded."""
    succeeded = sum(1 for r in results if r["success"])
    return {
        "success": succeeded == len(results),
        "results": results,
        "total": len(results),
        "succeeded": succeeded,
        "failed": len(results) - succeeded,
        "execution_time": elapsed,
    }


async def run_bounded(
    items: Iterable[BatchItem],
    run_one: Callable[[BatchItem], Awaitable[dict[str, Any]]],
    count: int,
    concurrency: int,
) -> list[dict[str, Any]]:
    """``run_one`` over ``items`` with at most ``concurrency`` running; results by index.

    ``run_one`` must not raise (each item's failure is its own result). Workers share one
    iterator: in a single-threaded event loop, ``next()`` needs no lock.
    """
    results: list[dict[str, Any]] = [{}] * count
    pending: Iterator[BatchItem] = iter(items)

    async def worker() -> None:
        for item in pending:
            results[item.index] = await run_one(item)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))
    return results


# -- one item: the execute route's steps ------------------------------------------------------
def _item_fields(item: BatchItem) -> tuple[Any, str | None, dict[str, Any] | None]:
    """The item's inputs, session id and context, with the shape checks of an execute body (the
    execution service checks the rest: security filter, session id, inputs)."""
    body = item.body
    unknown = sorted(body.keys() - ITEM_FIELDS)
    if unknown:
        raise ValidationError(
            f"Unknown request field: {unknown[0]} (allowed: name, inputs, session_id, context)",
            details={"field": unknown[0], "expected": "nothing", "received": "unknown field"},
        )
    context = body.get("context")
    if context is not None and not isinstance(context, dict):
        raise _invalid("context", "object", context, "Invalid parameter: context")
    session_id = body.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        raise _invalid("session_id", "string", session_id, "Invalid parameter: session_id")
    wide = wide_int_path(body)
    if wide is not None:
        raise range_error(wide)
    return body.get("inputs", {}), session_id, context


class _ItemRunner:
    """Runs one item for one request; built once per batch request."""

    __slots__ = ("limit_check", "needs_permission", "nexus", "request")

    def __init__(
        self, request: web.Request, nexus: Nexus, needs_permission: bool, limit: LimitCheck | None
    ) -> None:
        self.request = request
        self.nexus = nexus
        self.needs_permission = needs_permission
        self.limit_check = limit

    async def __call__(self, item: BatchItem) -> dict[str, Any]:
        execution_id: str | None = None
        try:
            self.nexus.get_workflow(item.name)  # WorkflowNotFound, as execute says
            if self.needs_permission:
                await check_permission(self.request, "execute", item.name)
            if self.limit_check is not None:
                await self.limit_check(self.request, item.name)
            execution_id = new_execution_id()
            envelope = await self._execute(item, execution_id)
            status = 200
        except NexusError as exc:
            envelope, status = error_envelope(exc, execution_id), exc.status
        except Exception as exc:  # a bug must not take the other items with it
            log.error("batch item %d (%s) failed", item.index, item.name, exc_info=exc)
            internal = NexusError("Internal server error")
            envelope, status = error_envelope(internal, execution_id), internal.status
        return {"index": item.index, "name": item.name, "status_code": status, **envelope}

    async def _execute(self, item: BatchItem, execution_id: str) -> dict[str, Any]:
        """The item through the execution service, as a sync execute would run it."""
        service = self.nexus.service
        assert service is not None, "the batch route only runs while the app serves"
        request = self.request
        actor = request.get(ACTOR)
        try:
            inputs, session_id, context = _item_fields(item)
        except NexusError as exc:  # keep a record under the id the client sees, like execute
            await service.reject(
                execution_id, item.name, exc, request_id=request[REQUEST_ID], actor=actor
            )
            raise
        run = RunRequest(
            item.name,
            inputs,
            "sync",
            session_id,
            context,
            actor,
            request[REQUEST_ID],
            execution_id,
        )
        return await service.run(run)


def _workflow_limit_check() -> LimitCheck | None:
    """The rate limiter's per-workflow check, when the core ships it (imported lazily)."""
    try:
        from nexus_aio.web.ratelimit import check_workflow_limit
    except ImportError:  # pragma: no cover - an older core without per-workflow checks
        return None
    return check_workflow_limit


def make_batch_handler(nexus: Nexus) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The ``POST /workflows/batch`` handler; settings and hook lookups happen once, here."""
    settings = nexus.settings
    max_items, concurrency = settings.batch_max_items, settings.batch_concurrency
    if max_items <= 0 or concurrency <= 0:
        raise ConfigurationError(
            "batch_max_items and batch_concurrency must be positive,"
            f" got {max_items} and {concurrency}"
        )
    needs_permission = nexus.hooks.implemented("permission_allowed", builtin=False)
    limit_check = _workflow_limit_check()

    async def batch(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if needs_permission:
            await check_permission(request, "batch", None)
        # 64-bit integer range: checked per item (_item_fields), so one bad item fails alone.
        items = parse_batch(await read_json(request, check_ints=False), max_items)
        runner = _ItemRunner(request, nexus, needs_permission, limit_check)
        results = await run_bounded(items, runner, len(items), concurrency)
        return json_response(summarize(results, time.perf_counter() - started))

    return batch


# -- hooks ------------------------------------------------------------------------------------
@hookimpl
def register_settings(nexus: Nexus) -> tuple[Setting, ...]:
    return SETTINGS


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return [web.post(BATCH_PATH, make_batch_handler(nexus))]


@hookimpl
def openapi_spec(nexus: Nexus, spec: Any) -> None:
    """Document the batch route next to the core routes, with the core's error envelope."""
    item = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "inputs": {"type": "object"},
            "session_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            "context": {"type": "object"},
        },
    }
    body = {
        "type": "object",
        "required": ["workflows"],
        "properties": {
            "workflows": {
                "type": "array",
                "items": item,
                "minItems": 1,
                "maxItems": nexus.settings.batch_max_items,
            }
        },
    }
    result = {
        "type": "object",
        "required": ["success", "results", "total", "succeeded", "failed"],
        "properties": {
            "success": {"type": "boolean", "description": "True when every item succeeded"},
            "results": {
                "type": "array",
                "description": "Per item, in request order: the envelope a single execute "
                "would have returned, with index, name and status_code",
                "items": {"type": "object"},
            },
            "total": {"type": "integer"},
            "succeeded": {"type": "integer"},
            "failed": {"type": "integer"},
            "execution_time": {"type": "number"},
        },
    }
    spec.path(
        path=nexus.settings.api_prefix + BATCH_PATH,
        operations={
            "post": {
                "operationId": "execute_batch",
                "summary": "Run several workflows in one request",
                "tags": ["workflows"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": {
                    "200": {
                        "description": "Per-item envelopes in request order",
                        "content": {"application/json": {"schema": result}},
                    },
                    **error_responses(400, 413, 429),
                },
            }
        },
    )

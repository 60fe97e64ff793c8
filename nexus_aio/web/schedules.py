"""``/schedules``: create, list, read, change (pause, resume, retime) and delete schedules, and the
scheduler task of the serving process.

A schedule is checked in full when it is created or changed: the workflow exists, its inputs
validate against the workflow's schema, the timing parses, the webhook (if any) is allowed. A
schedule fires ordinary async runs through the execution service (``execution/schedules.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio.errors import (
    ConfigurationError,
    Forbidden,
    ScheduleNotFound,
    ServiceUnavailable,
    Unauthorized,
    ValidationError,
    WorkflowNotFound,
)
from nexus_aio.execution.runtime import actor_id
from nexus_aio.execution.schedules import Scheduler, Timing, check_catchup
from nexus_aio.stores.schedules import Schedule, ScheduleStore
from nexus_aio.stores.sessions import validate_session_id
from nexus_aio.web.keys import ACTOR, NEXUS, nexus_of, service_of
from nexus_aio.web.permissions import check_permission
from nexus_aio.web.request import read_json
from nexus_aio.web.responses import json_response

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

__all__ = ["SCHEDULER", "make_scheduler_ctx", "schedule_routes"]

SCHEDULER = web.AppKey("nexus_aio.scheduler", Scheduler)
CREATE_FIELDS = frozenset(
    {
        "workflow",
        "inputs",
        "cron",
        "every",
        "timezone",
        "webhook",
        "session_id",
        "catchup",
        "paused",
    }
)
PATCH_FIELDS = CREATE_FIELDS - {"workflow"}
_DECLARED_ID = re.compile(r"[^A-Za-z0-9_.-]")


def _scheduler(request: web.Request) -> Scheduler:
    return request.app[SCHEDULER]


def _visible(request: web.Request, schedule: Schedule) -> bool:
    return schedule.actor is None or schedule.actor == actor_id(request.get(ACTOR))


async def _load(request: web.Request) -> Schedule:
    schedule_id = request.match_info["schedule_id"]
    schedule = await _scheduler(request).store.get(schedule_id)
    if schedule is None:
        raise ScheduleNotFound(
            f"Schedule {schedule_id!r} not found", details={"schedule_id": schedule_id}
        )
    if not _visible(request, schedule):
        if request.get(ACTOR) is None:
            raise Unauthorized("Authentication required for this schedule")
        raise Forbidden(
            "This schedule belongs to another actor", details={"schedule_id": schedule_id}
        )
    return schedule


def _unknown_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(body.keys() - allowed)
    if unknown:
        raise ValidationError(
            f"Unknown schedule field: {unknown[0]} (allowed: {', '.join(sorted(allowed))})",
            details={"field": unknown[0], "expected": "nothing", "received": "unknown field"},
        )


async def _check(request: web.Request, schedule: Schedule) -> Schedule:
    """Validate a whole schedule definition (a 400 naming the field) and time its next tick."""
    nexus = nexus_of(request)
    service = service_of(request)
    try:
        workflow = nexus.get_workflow(schedule.workflow)
    except WorkflowNotFound as exc:
        raise ValidationError(
            exc.message, details={"field": "workflow", "received": schedule.workflow}
        ) from None
    if not isinstance(schedule.inputs, dict):
        raise ValidationError(
            "inputs must be an object", details={"field": "inputs", "expected": "object"}
        )
    workflow.schema.validate(dict(schedule.inputs))
    timing = Timing.parse(schedule.cron, schedule.every, schedule.timezone)
    schedule.cron, schedule.every = timing.cron, timing.every
    schedule.catchup = check_catchup(schedule.catchup)
    if not isinstance(schedule.paused, bool):
        raise ValidationError("paused must be true or false", details={"field": "paused"})
    if schedule.session_id is not None:
        if not isinstance(schedule.session_id, str):
            raise ValidationError("session_id must be a string", details={"field": "session_id"})
        validate_session_id(schedule.session_id)
    if schedule.webhook is not None:
        service.webhooks.check(schedule.webhook, "async")
        await service.webhooks.check_resolved(schedule.webhook)
    now = time.time()
    schedule.next_run = timing.next_after(now)
    schedule.updated_at = now
    return schedule


async def create_schedule(request: web.Request) -> web.Response:
    body = await read_json(request, empty=None)
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object", details={"field": "body"})
    _unknown_fields(body, CREATE_FIELDS)
    name = body.get("workflow")
    if not isinstance(name, str) or not name:
        raise ValidationError(
            "workflow (a registered workflow's name) is required", details={"field": "workflow"}
        )
    await check_permission(request, "execute", name)
    scheduler = _scheduler(request)
    limit = nexus_of(request).settings.max_schedules
    if await scheduler.store.count() >= limit:
        raise ServiceUnavailable(
            f"The server holds its maximum of {limit} schedules (setting max_schedules)",
            details={"max_schedules": limit},
            headers={"Retry-After": "60"},
        )
    now = time.time()
    schedule = Schedule(
        id="sch-" + secrets.token_hex(12),
        workflow=name,
        next_run=now,
        created_at=now,
        updated_at=now,
        inputs=body.get("inputs", {}),
        cron=body.get("cron"),
        every=body.get("every"),
        timezone=body.get("timezone", "UTC"),
        paused=body.get("paused", False),
        catchup=body.get("catchup", "skip"),
        webhook=body.get("webhook"),
        session_id=body.get("session_id"),
        actor=actor_id(request.get(ACTOR)),
    )
    await scheduler.store.put(await _check(request, schedule))
    scheduler.wake.set()
    location = f"{nexus_of(request).settings.api_prefix}/schedules/{schedule.id}"
    return json_response(schedule.to_dict(), status=201, headers={"Location": location})


async def list_schedules(request: web.Request) -> web.Response:
    await check_permission(request, "read", "schedules")
    schedules = await _scheduler(request).store.all()
    return json_response({"schedules": [s.to_dict() for s in schedules if _visible(request, s)]})


async def get_schedule(request: web.Request) -> web.Response:
    await check_permission(request, "read", "schedules")
    return json_response((await _load(request)).to_dict())


async def patch_schedule(request: web.Request) -> web.Response:
    schedule = await _load(request)
    await check_permission(request, "execute", schedule.workflow)
    body = await read_json(request, empty=None)
    if not isinstance(body, dict) or not body:
        raise ValidationError(
            "The body must be a JSON object of the fields to change", details={"field": "body"}
        )
    _unknown_fields(body, PATCH_FIELDS)
    if "cron" in body or "every" in body:  # a new timing replaces the old one whole
        schedule.cron, schedule.every = body.get("cron"), body.get("every")
    for name in ("inputs", "timezone", "paused", "catchup", "webhook", "session_id"):
        if name in body:
            setattr(schedule, name, body[name])
    schedule.declared = False  # edited by hand: the code no longer owns it
    scheduler = _scheduler(request)
    await scheduler.store.put(await _check(request, schedule))
    scheduler.wake.set()
    return json_response(schedule.to_dict())


async def delete_schedule(request: web.Request) -> web.Response:
    schedule = await _load(request)
    await check_permission(request, "execute", schedule.workflow)
    await _scheduler(request).store.delete(schedule.id)
    return web.Response(status=204)


def schedule_routes() -> list[web.RouteDef]:
    return [
        web.post("/schedules", create_schedule),
        web.get("/schedules", list_schedules, allow_head=False),
        web.get("/schedules/{schedule_id}", get_schedule, allow_head=False),
        web.patch("/schedules/{schedule_id}", patch_schedule),
        web.delete("/schedules/{schedule_id}", delete_schedule),
    ]


def declared_id(workflow: str) -> str:
    return "sch-decl-" + _DECLARED_ID.sub("_", workflow)


async def _sync_declared(nexus: Nexus, store: ScheduleStore) -> None:
    """Keep ``@app.workflow(schedule=...)`` schedules in step with the code: created when new,
    retimed when the expression changed (hand-edited ones are left alone)."""
    now = time.time()
    for name, cron in nexus.declared_schedules.items():
        schedule_id = declared_id(name)
        existing = await store.get(schedule_id)
        if existing is not None and (not existing.declared or existing.cron == cron):
            continue
        timing = Timing.parse(cron, None)
        await store.put(
            Schedule(
                id=schedule_id,
                workflow=name,
                next_run=timing.next_after(now),
                created_at=existing.created_at if existing else now,
                updated_at=now,
                cron=timing.cron,
                declared=True,
            )
        )


def make_scheduler_ctx(nexus: Nexus) -> Any:
    async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
        service = app[NEXUS].service
        assert service is not None
        store = await nexus.hooks.storage_backend("schedules")
        if store is None:
            raise ConfigurationError("no storage_backend plugin supplied the schedules store")
        await store.open()
        try:
            await _sync_declared(nexus, store)
            scheduler = app[SCHEDULER] = Scheduler(
                service, store, nexus.settings.schedule_misfire_grace
            )
            task = asyncio.create_task(scheduler.run(), name="nexus_aio.scheduler")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await store.close()

    return scheduler_ctx

"""The tool catalog: one MCP tool per workflow plus the lifecycle tools, and how answers look.

Pure functions of the app's registry (no I/O): tool names, input and output schemas, and the
``CallToolResult`` a success envelope or an error becomes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mcp.types as types
import orjson

from nexus_aio.envelope import error_envelope
from nexus_aio.errors import ConfigurationError, NexusError
from nexus_aio.web.responses import dumps

if TYPE_CHECKING:
    from nexus_aio import Nexus
    from nexus_aio.workflows.workflow import CompiledWorkflow

__all__ = [
    "CANCEL",
    "LIFECYCLE_TOOLS",
    "START",
    "STATUS",
    "Catalog",
    "error_result",
    "json_result",
    "output_schema",
    "tool_name",
]

START, STATUS, CANCEL = "nexus.start", "nexus.status", "nexus.cancel"
MAX_STATUS_WAIT = 60.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

_START_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "workflow": {"type": "string", "description": "The workflow to run"},
        "inputs": {"type": "object", "description": "The workflow's inputs"},
        "session_id": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._:-]{1,128}$",
            "description": "Continue (or start) a session",
        },
        "idempotency_key": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "description": "The same key and request within idempotency_ttl start one run",
        },
    },
    "required": ["workflow"],
    "additionalProperties": False,
}
_ID_PROPERTY = {"type": "string", "description": "The workflow_id nexus.start returned"}
_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "workflow_id": _ID_PROPERTY,
        "wait": {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_STATUS_WAIT,
            "description": "Seconds to wait for the run to finish (long poll)",
        },
    },
    "required": ["workflow_id"],
    "additionalProperties": False,
}
_CANCEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"workflow_id": _ID_PROPERTY},
    "required": ["workflow_id"],
    "additionalProperties": False,
}

LIFECYCLE_TOOLS = (
    types.Tool(
        name=START,
        description="Start a workflow in the background (async mode); returns its workflow_id "
        "and status. Follow it with nexus.status, stop it with nexus.cancel.",
        input_schema=_START_SCHEMA,
    ),
    types.Tool(
        name=STATUS,
        description="The execution record of a run (status, result or error); with wait, "
        "waits up to that many seconds (at most 60) for it to finish.",
        input_schema=_STATUS_SCHEMA,
    ),
    types.Tool(
        name=CANCEL,
        description="Cancel a queued or running run; returns its cancelled record.",
        input_schema=_CANCEL_SCHEMA,
    ),
)


def tool_name(workflow: str) -> str:
    """A workflow name as an MCP tool name: characters outside ``[A-Za-z0-9_.-]`` become ``_``."""
    return _UNSAFE.sub("_", workflow)[:128]


def output_schema(outputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The success envelope's schema around the return type; None when the type is unknown.

    ``structuredContent`` must be an object, and a workflow may return anything: the envelope
    (``result`` plus ``workflow_id`` and timing) is the object, as HTTP execute answers.
    """
    result = outputs.get("result") or {}
    if not result:
        return None
    return {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "result": result,
            "workflow_id": {"type": "string"},
            "execution_time": {"type": "number"},
            "timestamp": {"type": "string"},
            "session_id": {"type": "string"},
        },
        "required": ["success", "result", "workflow_id"],
    }


@dataclass(frozen=True, slots=True)
class Catalog:
    """The app's tools, worked out once: tool name -> workflow name, and the ``Tool`` models."""

    workflows: dict[str, str]  # tool name -> workflow name
    tools: dict[str, types.Tool]  # tool name -> Tool (workflow tools only)

    @classmethod
    def build(cls, nexus: Nexus) -> Catalog:
        """Every registered workflow as a tool; two workflows (or a workflow and a lifecycle
        tool) landing on one tool name fail startup with ``ConfigurationError``."""
        reserved = {tool.name: tool.name for tool in LIFECYCLE_TOOLS}
        workflows: dict[str, str] = {}
        tools: dict[str, types.Tool] = {}
        for name in sorted(nexus.workflows):
            wf = nexus.workflows[name]
            key = tool_name(name)
            taken = workflows.get(key) or reserved.get(key)
            if taken is not None:
                raise ConfigurationError(
                    f"MCP tool name {key!r} is taken twice: workflow {name!r} and "
                    f"{'workflow ' if taken in workflows.values() else 'lifecycle tool '}"
                    f"{taken!r}; rename one of them"
                )
            workflows[key] = name
            tools[key] = _workflow_tool(key, wf)
        return cls(workflows, tools)


def _workflow_tool(key: str, wf: CompiledWorkflow) -> types.Tool:
    description = (wf.description or "").strip() or f"Run the {wf.name} workflow"
    return types.Tool(
        name=key,
        title=wf.name if key != wf.name else None,
        description=description,
        input_schema=wf.schema.json_schema(),
        output_schema=output_schema(wf.outputs),
    )


# -- answers ----------------------------------------------------------------------------------
def _plain(data: Any) -> Any:
    """JSON-native data (what orjson makes of dataclasses, datetimes and the like)."""
    return orjson.loads(dumps(data))


def json_result(data: Mapping[str, Any]) -> types.CallToolResult:
    """A successful call: the object as ``structuredContent`` and as one JSON text block."""
    plain = _plain(data)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=orjson.dumps(plain).decode())],
        structured_content=plain,
        is_error=False,
    )


def error_result(
    error: NexusError | Mapping[str, Any], workflow_id: str | None = None
) -> types.CallToolResult:
    """A tool error (``isError``): the error envelope (``error`` with ``type``, ``message`` and
    ``details``; the ``workflow_id`` when a run was recorded) as ``structuredContent`` and as a
    JSON text block, never a traceback. (Clients check ``outputSchema`` only on success.)"""
    envelope = error_envelope(error, workflow_id) if isinstance(error, NexusError) else error
    plain = _plain(envelope)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=orjson.dumps(plain).decode())],
        structured_content=plain,
        is_error=True,
    )

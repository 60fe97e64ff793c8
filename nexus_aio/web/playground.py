"""The playground: a page per workflow to try it from a browser, and a page listing them.

``GET /playground`` lists the workflows; ``GET /playground/{name}`` is a form generated (by the
page's script) from the workflow's input JSON schema, the one OpenAPI shows, which the server
embeds in the page. The page runs the workflow through the ordinary execute route (sync or SSE),
so it meets the same middleware, auth and permissions as any other client.

Everything is served from package data (``static/playground``), read once when the routes are
built: no CDN, no build step. Workflow names and descriptions are data: HTML-escaped in the
markup, and the embedded JSON escapes ``<``, ``>`` and ``&`` so it cannot close its script tag.
A ``Content-Security-Policy`` allows only this origin's scripts, styles and connections.
"""

from __future__ import annotations

import html
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from nexus_aio.errors import NotFound
from nexus_aio.web.keys import WORKFLOW_NAME, nexus_of
from nexus_aio.web.permissions import check_permission
from nexus_aio.web.responses import dumps

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus
    from nexus_aio.settings import Settings
    from nexus_aio.workflows.workflow import CompiledWorkflow

__all__ = ["STATIC_DIR", "playground_enabled", "playground_routes"]

STATIC_DIR = Path(__file__).parent / "static" / "playground"
ASSETS = {"playground.css": "text/css", "playground.js": "text/javascript"}
ASSET_CACHE = "public, max-age=3600"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def playground_enabled(settings: Settings) -> bool:
    """``enable_playground``, or ``enable_docs`` when it is unset (None)."""
    value = settings.enable_playground
    return bool(settings.enable_docs if value is None else value)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _script_json(value: Any) -> str:
    """JSON to embed in ``<script type="application/json">``: no ``</script>`` can appear."""
    return dumps(value).decode().translate(_SCRIPT_SAFE)


def _page_url(prefix: str, name: str) -> str:
    return f"{prefix}/playground/{quote(name, safe='')}"


def _hidden(handler: Any) -> Any:
    handler.openapi_hidden = True
    return handler


def _html(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


def _list_rows(prefix: str, workflows: dict[str, CompiledWorkflow]) -> str:
    rows = []
    for name, wf in workflows.items():
        inputs = ", ".join(wf.schema.fields) or "no inputs"
        rows.append(
            f'<tr><td><a class="workflow-link" href="{_e(_page_url(prefix, name))}">'
            f"{_e(name)}</a></td><td>{_e(wf.description)}</td><td>{_e(wf.kind)}</td>"
            f"<td>{_e(inputs)}</td></tr>"
        )
    return "\n".join(rows)


def playground_routes(nexus: Nexus) -> list[web.RouteDef]:
    """The playground routes, or none when the playground is off."""
    if not playground_enabled(nexus.settings):
        return []
    prefix = nexus.settings.api_prefix
    static_url = f"{prefix}/playground/static"
    list_page = Template((STATIC_DIR / "list.html").read_text(encoding="utf-8"))
    workflow_page = Template((STATIC_DIR / "workflow.html").read_text(encoding="utf-8"))
    assets = {name: (STATIC_DIR / name).read_bytes() for name in ASSETS}

    async def list_workflows(request: web.Request) -> web.Response:
        await check_permission(request, "list", None)
        workflows = nexus_of(request).workflows
        body = list_page.substitute(
            static=_e(static_url),
            docs=_e(f"{prefix}/docs"),
            count=len(workflows),
            rows=_list_rows(prefix, workflows),
        )
        return _html(body)

    async def workflow(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        request[WORKFLOW_NAME] = name
        wf = nexus_of(request).get_workflow(name)  # WorkflowNotFound (404)
        await check_permission(request, "read", name)
        quoted = quote(name, safe="")
        config = {
            "name": wf.name,
            "execute": f"{prefix}/workflows/{quoted}/execute",
            "executions": f"{prefix}/executions/",
            "schema": wf.schema.json_schema(include_files=True),
        }
        body = workflow_page.substitute(
            static=_e(static_url),
            list_url=_e(f"{prefix}/playground"),
            schema_url=_e(f"{prefix}/workflows/{quoted}/schema"),
            name=_e(wf.name),
            kind=_e(wf.kind),
            description=_e(wf.description or ""),
            config=_script_json(config),
        )
        return _html(body)

    async def asset(request: web.Request) -> web.Response:
        filename = request.match_info["filename"]
        body = assets.get(filename)
        if body is None:
            raise NotFound(f"No playground asset {filename!r}", details={"asset": filename})
        return web.Response(
            body=body,
            headers={
                "Content-Type": f"{ASSETS[filename]}; charset=utf-8",
                "Cache-Control": ASSET_CACHE,
                "X-Content-Type-Options": "nosniff",
            },
        )

    return [
        web.get("/playground", _hidden(list_workflows), allow_head=False),
        web.get("/playground/static/{filename}", _hidden(asset), allow_head=False),
        web.get("/playground/{name}", _hidden(workflow), allow_head=False),
    ]

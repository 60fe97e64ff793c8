"""A real browser (headless Chromium) on another site cannot run a workflow; on the API's own
origin it can.

One server serves the page and the API. Chromium maps the name ``evil.test`` to 127.0.0.1, so the
page loaded as ``http://evil.test:PORT/xo-page`` is another site than ``http://127.0.0.1:PORT``:
its ``fetch`` (``no-cors``, the kind any page may send without asking) reaches the server with
the headers Chromium itself sets, and the core refuses it. The same page loaded from
``127.0.0.1`` posts to its own origin and the run happens. The page cannot read a ``no-cors``
answer, so the test counts the runs in the server.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from chromium import dump_dom, needs_chromium

from nexus_aio import hookimpl
from nexus_aio.testing import make_app

pytestmark = needs_chromium
MAP_EVIL = "--host-resolver-rules=MAP evil.test 127.0.0.1"

PAGE = """<!doctype html>
<html><body><p id="state">waiting</p>
<script>
const state = document.getElementById('state');
const target = '%(target)s/workflows/touch/execute';
fetch(target, {method: 'POST', mode: '%(mode)s', body: '{"inputs": {"n": 1}}'})
  .then((r) => { state.textContent = 'answered:' + r.type + ':' + r.status; })
  .catch((e) => { state.textContent = 'failed:' + e; });
</script></body></html>
"""


class Page:
    """A test-only route serving the attacking (or own-origin) page; records what the server
    answered to each POST and the headers the browser sent with it."""

    __name__ = "browser_crossorigin_page"

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None, int]] = []

    @hookimpl
    def register_cleanup_ctx(self, nexus: Any) -> list[Any]:
        async def record(request: web.Request, response: web.StreamResponse) -> None:
            if request.method == "POST":
                headers = request.headers
                self.seen.append(
                    (headers.get("Sec-Fetch-Site"), headers.get("Origin"), response.status)
                )

        async def ctx(app: web.Application) -> Any:
            app.on_response_prepare.append(record)
            yield

        return [ctx]

    @hookimpl
    def register_routes(self, nexus: Any) -> list[web.RouteDef]:
        async def page(request: web.Request) -> web.Response:
            target = request.query.get("target", "")
            mode = request.query.get("mode", "no-cors")
            return web.Response(
                text=PAGE % {"target": target, "mode": mode}, content_type="text/html"
            )

        return [web.get("/xo-page", page)]


def test_a_page_on_another_site_posting_to_the_server_is_refused(nexus_thread_server, tmp_path):
    page = Page()
    app = make_app(plugins=[page], load_entry_points=False)
    runs: list[int] = []

    @app.workflow()
    async def touch(n: int = 1) -> int:
        runs.append(n)
        return len(runs)

    url = nexus_thread_server(app)  # http://127.0.0.1:PORT
    port = url.rsplit(":", 1)[1]
    attack = f"http://evil.test:{port}/xo-page?target={url}"
    dom = dump_dom(attack, str(tmp_path / "attack"), MAP_EVIL)
    assert 'id="state">answered:opaque:0<' in dom, dom  # sent, and the page learns nothing
    assert runs == []
    assert page.seen == [("cross-site", f"http://evil.test:{port}", 403)]

    own = f"{url}/xo-page?mode=same-origin"
    dom = dump_dom(own, str(tmp_path / "own"), MAP_EVIL)
    assert 'id="state">answered:basic:200<' in dom, dom
    assert runs == [1]
    assert page.seen[1] == ("same-origin", url, 200)

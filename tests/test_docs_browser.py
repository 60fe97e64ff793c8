"""Real headless Chromium renders ``/docs`` (Swagger UI served by the app, no CDN): every
workflow's execute operation appears in the rendered page."""

from __future__ import annotations

from chromium import dump_dom, needs_chromium

from nexus_aio.testing import make_app


@needs_chromium
def test_swagger_ui_renders_every_workflow(nexus_thread_server, tmp_path):
    app = make_app(api_prefix="/api")
    url = nexus_thread_server(app)
    dom = dump_dom(f"{url}/docs", str(tmp_path), budget_ms=15000, timeout=60)
    assert 'class="swagger-ui' in dom, dom[:2000]
    assert "opblock" in dom  # operations were rendered from the document, not just the shell
    for name in app.workflows:
        assert f"/api/workflows/{name}/execute" in dom, name

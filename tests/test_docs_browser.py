"""Real headless Chromium renders ``/docs`` (Swagger UI served by the app, no CDN): every
workflow's execute operation appears in the rendered page."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from nexus_aio.testing import make_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_swagger_ui_renders_every_workflow(nexus_thread_server, tmp_path):
    app = make_app(api_prefix="/api")
    url = nexus_thread_server(app)
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={tmp_path}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{url}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'class="swagger-ui' in dom, dom[:2000]
    assert "opblock" in dom  # operations were rendered from the document, not just the shell
    for name in app.workflows:
        assert f"/api/workflows/{name}/execute" in dom, name

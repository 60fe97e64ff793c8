"""The auth plugin over real HTTP: 401/403/200, public paths, scopes, Context.actor, startup."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import aiohttp
import jwt
import pytest
import yarl
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nexus_aio import Context, Nexus
from nexus_aio.errors import ConfigurationError
from nexus_aio.testing import make_app

SECRET = "test-secret-that-is-long-enough-for-hs256!"
API_KEY = "key-0123456789abcdef"
OTHER_KEY = "key-fedcba9876543210"
SUM = {"inputs": {"a": 1, "b": 2}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hs256_by_hand(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 JWT signed with any key (PyJWT itself refuses a PEM as an HMAC secret)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def auth_app(**settings: Any) -> Nexus:
    settings.setdefault("enable_auth", True)
    settings.setdefault("auth_api_keys", [API_KEY, OTHER_KEY])
    settings.setdefault("auth_jwt_secret", SECRET)
    return make_app(**settings)


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    all_headers = {**(bearer(token) if token else {}), **(headers or {})}
    async with http.request(method, url, json=json, headers=all_headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body, resp.headers


async def test_plugin_is_listed_by_get_plugins_with_version_and_hooks(nexus_server, http):
    url = await nexus_server(auth_app())
    status, body, _ = await call(http, "GET", f"{url}/plugins", API_KEY)
    assert status == 200
    plugin = next(p for p in body["plugins"] if p["name"] == "auth")
    assert plugin["version"] == "0.1.0"
    assert plugin["builtin"] is False
    assert {"actor_from_request", "permission_allowed", "register_middlewares"} <= set(
        plugin["hooks"]
    )


async def test_execute_without_token_is_401_envelope_with_bearer_challenge(nexus_server, http):
    url = await nexus_server(auth_app())
    status, body, headers = await call(http, "POST", f"{url}/workflows/sum/execute", json=SUM)
    assert status == 401
    assert body["success"] is False
    assert body["error"]["type"] == "Unauthorized"
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_unknown_path_without_token_is_401_not_404(nexus_server, http):
    url = await nexus_server(auth_app())
    status, _, _ = await call(http, "GET", f"{url}/no/such/path")
    assert status == 401


@pytest.mark.parametrize("token", ["not-a-key", "a.b.c", API_KEY + "x", API_KEY[:-1]])
async def test_bad_token_is_401_invalid_token(nexus_server, http, token):
    url = await nexus_server(auth_app())
    status, body, headers = await call(http, "POST", f"{url}/workflows/sum/execute", token, SUM)
    assert status == 401
    assert body["error"]["message"] == "Invalid or expired token"
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert token not in str(body)


async def test_expired_jwt_is_401_with_reason_expired(nexus_server, http, make_token):
    url = await nexus_server(auth_app())
    token = make_token("execute:*", exp_in=-3600)
    status, body, _ = await call(http, "POST", f"{url}/workflows/sum/execute", token, SUM)
    assert status == 401
    assert body["error"]["details"] == {"reason": "expired"}


async def test_jwt_without_exp_is_401(nexus_server, http, make_token):
    url = await nexus_server(auth_app())
    token = make_token("execute:*", exp_in=None)
    status, _, _ = await call(http, "POST", f"{url}/workflows/sum/execute", token, SUM)
    assert status == 401


async def test_jwt_signed_with_another_secret_is_401(nexus_server, http, make_token):
    url = await nexus_server(auth_app())
    token = make_token("execute:*", key="another-secret-also-long-enough-for-hs256")
    status, _, _ = await call(http, "POST", f"{url}/workflows/sum/execute", token, SUM)
    assert status == 401


async def test_unsigned_alg_none_jwt_is_401(nexus_server, http):
    url = await nexus_server(auth_app())
    token = jwt.encode({"sub": "x", "exp": 2**31, "scope": "*"}, None, algorithm="none")
    status, body, _ = await call(http, "POST", f"{url}/workflows/sum/execute", token, SUM)
    assert status == 401
    assert body["error"]["details"] == {"reason": "algorithm"}


async def test_good_api_key_is_200(nexus_server, http):
    url = await nexus_server(auth_app())
    for key in (API_KEY, OTHER_KEY):
        status, body, _ = await call(http, "POST", f"{url}/workflows/sum/execute", key, SUM)
        assert status == 200
        assert body["result"] == 3


async def test_jwt_with_execute_sum_runs_sum_but_gets_403_on_another_workflow(
    nexus_server, http, make_token
):
    url = await nexus_server(auth_app())
    token = make_token("execute:sum")
    status, body, _ = await call(http, "POST", f"{url}/workflows/sum/execute", token, SUM)
    assert (status, body["result"]) == (200, 3)
    greet = {"inputs": {"name": "x"}}
    status, body, _ = await call(http, "POST", f"{url}/workflows/greet/execute", token, greet)
    assert status == 403
    assert body["error"]["type"] == "Forbidden"
    assert body["error"]["details"] == {"action": "execute", "resource": "greet"}


async def test_jwt_with_only_read_scope_reads_but_cannot_execute(nexus_server, http, make_token):
    url = await nexus_server(auth_app())
    token = make_token("read")
    assert (await call(http, "GET", f"{url}/workflows", token))[0] == 200
    assert (await call(http, "GET", f"{url}/workflows/sum/schema", token))[0] == 200
    assert (await call(http, "GET", f"{url}/plugins", token))[0] == 200
    status, _, _ = await call(http, "POST", f"{url}/workflows/sum/execute", token, SUM)
    assert status == 403


async def test_jwt_with_only_execute_scope_cannot_list_workflows(nexus_server, http, make_token):
    url = await nexus_server(auth_app())
    token = make_token("execute:*")
    assert (await call(http, "GET", f"{url}/workflows", token))[0] == 403
    assert (await call(http, "GET", f"{url}/workflows/sum/schema", token))[0] == 403
    assert (await call(http, "POST", f"{url}/workflows/greet/execute", token, {}))[0] != 403


async def test_health_is_public_without_token_including_health_subpaths(nexus_server, http):
    url = await nexus_server(auth_app())
    status, body, _ = await call(http, "GET", f"{url}/health")
    assert (status, body["status"]) == (200, "healthy")
    assert (await call(http, "GET", f"{url}/health/detailed"))[0] == 200
    assert (await call(http, "GET", f"{url}/healthz"))[0] == 401
    # Dot segments under a public path never reach a protected handler.
    for path in ("/health/%2e%2e/workflows", "/health/..%2Fworkflows"):
        async with http.get(yarl.URL(url + path, encoded=True)) as resp:
            assert resp.status in (401, 404)


async def test_public_paths_are_configurable_and_strip_api_prefix(nexus_server, http):
    app = auth_app(api_prefix="/api/v1", auth_public_paths=["/workflows"])
    url = await nexus_server(app)  # url ends with the prefix
    assert (await call(http, "GET", f"{url}/workflows"))[0] == 200
    assert (await call(http, "GET", f"{url}/workflows/sum/schema"))[0] == 200
    assert (await call(http, "GET", f"{url}/health"))[0] == 401


async def test_public_paths_from_environment(nexus_server, http, monkeypatch):
    monkeypatch.setenv("NEXUS_ENABLE_AUTH", "1")
    monkeypatch.setenv("NEXUS_AUTH_API_KEYS", f"{API_KEY},{OTHER_KEY}")
    monkeypatch.setenv("NEXUS_AUTH_PUBLIC_PATHS", "/plugins")
    url = await nexus_server(make_app())
    assert (await call(http, "GET", f"{url}/plugins"))[0] == 200
    assert (await call(http, "GET", f"{url}/health"))[0] == 401
    status, _, _ = await call(http, "POST", f"{url}/workflows/sum/execute", OTHER_KEY, SUM)
    assert status == 200


async def test_auth_settings_work_through_constructor_app_api_and_environment(
    nexus_server, http, monkeypatch
):
    by_api = make_app()
    by_api.api.auth_enabled = True
    by_api.api.auth_api_keys = (API_KEY,)
    apps = [make_app(enable_auth=True, auth_api_keys=[API_KEY]), by_api]
    monkeypatch.setenv("NEXUS_ENABLE_AUTH", "on")
    monkeypatch.setenv("NEXUS_AUTH_API_KEYS", f" {API_KEY} ,")
    apps.append(make_app())
    monkeypatch.delenv("NEXUS_ENABLE_AUTH")
    monkeypatch.delenv("NEXUS_AUTH_API_KEYS")
    for app in apps:
        url = await nexus_server(app)
        assert (await call(http, "POST", f"{url}/workflows/sum/execute", json=SUM))[0] == 401
        status, _, _ = await call(http, "POST", f"{url}/workflows/sum/execute", API_KEY, SUM)
        assert status == 200


def test_auth_settings_are_type_checked():
    with pytest.raises(ConfigurationError, match="auth_api_keys must be a list of strings"):
        make_app(enable_auth=True, auth_api_keys=API_KEY)
    with pytest.raises(ConfigurationError, match="auth_jwt_leeway must be a number"):
        make_app().api.auth_jwt_leeway = "soon"


async def test_actor_reaches_context_actor(nexus_server, http, make_token):
    app = auth_app()

    @app.workflow()
    async def whoami(ctx: Context) -> dict[str, Any]:
        return {"id": ctx.actor["id"], "type": ctx.actor["type"], "scopes": ctx.actor["scopes"]}

    url = await nexus_server(app)
    token = make_token("execute:whoami read", sub="alice")
    status, body, _ = await call(http, "POST", f"{url}/workflows/whoami/execute", token, {})
    assert status == 200
    assert body["result"] == {"id": "alice", "type": "jwt", "scopes": ["execute:whoami", "read"]}
    status, body, _ = await call(http, "POST", f"{url}/workflows/whoami/execute", API_KEY, {})
    assert body["result"]["type"] == "api_key"
    assert body["result"]["id"].startswith("apikey:")
    assert API_KEY not in body["result"]["id"]


def test_enabled_without_credentials_fails_at_startup():
    app = Nexus(database=":memory:", enable_auth=True)
    with pytest.raises(ConfigurationError, match="no credentials"):
        app.create_app()


def test_enabled_with_short_jwt_secret_fails_at_startup():
    app = Nexus(database=":memory:", enable_auth=True, auth_jwt_secret="short")
    with pytest.raises(ConfigurationError, match="too short"):
        app.create_app()


async def test_installed_but_disabled_changes_nothing(nexus_server, http):
    app = make_app()
    url = await nexus_server(app)
    status, body, _ = await call(http, "POST", f"{url}/workflows/sum/execute", json=SUM)
    assert (status, body["result"]) == (200, 3)
    # Credentials are not even looked at when auth is off.
    status, _, _ = await call(http, "POST", f"{url}/workflows/sum/execute", "junk", SUM)
    assert status == 200
    without = make_app(disable_plugins=["auth"])
    without.create_app()
    # the auth plugin adds no middleware while it is off
    assert len(app.app.middlewares) == len(without.app.middlewares)


async def test_requests_refused_by_auth_never_reach_the_rate_limiter(nexus_server, http):
    url = await nexus_server(auth_app(rate_limit=2, rate_limit_burst=2))
    statuses = [(await call(http, "GET", f"{url}/workflows"))[0] for _ in range(5)]
    assert statuses == [401] * 5
    status, _, headers = await call(http, "GET", f"{url}/workflows", API_KEY)
    assert status == 200
    assert headers["X-RateLimit-Remaining"] == "1"


async def test_rs256_public_key_accepts_its_tokens_and_refuses_hs256_confusion(nexus_server, http):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    app = make_app(enable_auth=True, auth_jwt_public_key=pem.replace("\n", "\\n"))
    url = await nexus_server(app)
    good = jwt.encode({"sub": "svc", "exp": 2**31, "scope": "execute:sum"}, private, "RS256")
    assert (await call(http, "POST", f"{url}/workflows/sum/execute", good, SUM))[0] == 200
    # Signing HS256 with the public key as the HMAC secret must not work.
    forged = hs256_by_hand({"sub": "x", "exp": 2**31, "scope": "*"}, pem.encode())
    assert (await call(http, "POST", f"{url}/workflows/sum/execute", forged, SUM))[0] == 401


async def test_issuer_and_audience_are_checked_when_configured(nexus_server, http, make_token):
    app = auth_app(auth_jwt_issuer="https://issuer.example", auth_jwt_audience="nexus")
    url = await nexus_server(app)
    execute = f"{url}/workflows/sum/execute"
    good = make_token(iss="https://issuer.example", aud="nexus")
    assert (await call(http, "POST", execute, good, SUM))[0] == 200
    wrong_iss = make_token(iss="https://evil.example", aud="nexus")
    assert (await call(http, "POST", execute, wrong_iss, SUM))[0] == 401
    wrong_aud = make_token(iss="https://issuer.example", aud="other")
    assert (await call(http, "POST", execute, wrong_aud, SUM))[0] == 401
    no_claims = make_token()
    assert (await call(http, "POST", execute, no_claims, SUM))[0] == 401


async def test_other_authorization_schemes_count_as_no_credentials(nexus_server, http):
    url = await nexus_server(auth_app())
    headers = {"Authorization": "Basic dXNlcjpwYXNz"}
    status, body, _ = await call(http, "GET", f"{url}/workflows", headers=headers)
    assert status == 401
    assert body["error"]["message"] == "Authentication required"


# -- hardening (issue 12, "Who may do what") ----------------------------------------------------
async def test_api_key_identity_is_64_bits_of_its_hash_and_no_jwt_sub_can_claim_it(
    nexus_server, http, make_token
):
    app = auth_app()

    @app.workflow()
    async def whoami(ctx: Context) -> str:
        return str(ctx.actor["id"])

    url = await nexus_server(app)
    status, body, _ = await call(http, "POST", f"{url}/workflows/whoami/execute", API_KEY, {})
    key_id = "apikey:" + hashlib.sha256(API_KEY.encode()).hexdigest()[:16]
    assert body["result"] == key_id  # 16 hex digits: 64 bits of the hash
    status, queued, _ = await call(
        http, "POST", f"{url}/workflows/sum/execute?mode=async", API_KEY, SUM
    )
    assert status == 202
    run = f"{url}/executions/{queued['workflow_id']}"
    status, record, _ = await call(http, "GET", f"{run}?wait=5", API_KEY)
    assert status == 200 and record["status"] == "succeeded"
    impostor = make_token("read execute:*", sub=key_id)
    status, body, _ = await call(http, "GET", run, impostor)
    assert status == 401, body
    assert body["error"]["details"] == {"reason": "subject"}
    status, body, _ = await call(http, "GET", f"{url}/executions", impostor)
    assert status == 401
    for sub in ("apikey:", "apikey:" + "0" * 16):
        status, _, _ = await call(http, "GET", f"{url}/workflows", make_token("read", sub=sub))
        assert status == 401


async def test_api_keys_shorter_than_16_characters_are_refused_at_startup():
    with pytest.raises(ConfigurationError, match="at least 16") as info:
        auth_app(auth_api_keys=[API_KEY, "short-key-15chr"]).create_app()
    assert "short-key-15chr" not in str(info.value)  # never echo a key
    auth_app(auth_api_keys=["exactly-16-chars"]).create_app()


def test_a_short_api_key_stops_the_server_with_a_clear_error(tmp_path):
    from nexus_aio.testing import ServerProcess

    server = ServerProcess(
        ["serve"],
        cwd=tmp_path,
        env={"NEXUS_ENABLE_AUTH": "1", "NEXUS_AUTH_API_KEYS": "too-short"},
    )
    assert server.proc.wait(timeout=30) != 0
    output = server.stop()
    assert "auth_api_keys: key #1 is 9 characters long" in output
    assert "at least 16" in output and "Traceback" not in output


@pytest.mark.parametrize("scope", [42, {"execute": "*"}, ["execute:*", 7], [["read"]], True])
async def test_a_jwt_scope_that_is_not_a_string_or_list_of_strings_is_401(
    nexus_server, http, make_token, scope
):
    url = await nexus_server(auth_app())
    token = make_token(scope)
    for _ in range(2):  # never cached as valid
        status, body, headers = await call(http, "POST", f"{url}/workflows/sum/execute", token, SUM)
        assert status == 401, body
        assert body["error"]["details"] == {"reason": "scope"}
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]


async def test_a_jwt_scope_list_of_strings_is_accepted(nexus_server, http, make_token):
    url = await nexus_server(auth_app())
    token = make_token(["execute:sum", "read"])
    status, body, _ = await call(http, "POST", f"{url}/workflows/sum/execute", token, SUM)
    assert (status, body["result"]) == (200, 3)
    assert (await call(http, "GET", f"{url}/workflows", token))[0] == 200


async def test_execute_scope_lets_an_actor_cancel_its_own_runs_but_not_anothers(
    nexus_server, http, make_token
):
    url = await nexus_server(auth_app())
    alice = make_token("execute:slow read:executions", sub="alice")
    bob = make_token("execute:slow", sub="bob")
    slow = {"inputs": {"seconds": 10}}
    status, queued, _ = await call(
        http, "POST", f"{url}/workflows/slow/execute?mode=async", alice, slow
    )
    assert status == 202
    run = f"{url}/executions/{queued['workflow_id']}"
    status, body, _ = await call(http, "DELETE", run, bob)
    assert status == 403, body
    status, body, _ = await call(http, "DELETE", run, alice)
    assert status == 200, body
    assert body["status"] == "cancelled"
    reader = make_token("read", sub="alice")  # no execute scope, no write: may not cancel
    status, queued, _ = await call(
        http, "POST", f"{url}/workflows/slow/execute?mode=async", alice, slow
    )
    status, body, _ = await call(
        http, "DELETE", f"{url}/executions/{queued['workflow_id']}", reader
    )
    assert status == 403, body
    await call(http, "DELETE", f"{url}/executions/{queued['workflow_id']}", alice)


async def test_health_detailed_without_credentials_reports_statuses_only(nexus_server, http):
    url = await nexus_server(auth_app(database=":memory:"))
    for path in ("/health/detailed", "/health/ready"):
        status, body, _ = await call(http, "GET", f"{url}{path}")
        assert status == 200, body
        assert body["components"], body
        for name, report in body["components"].items():
            assert report == {"status": report["status"]}, (path, name)
            assert report["status"] in ("healthy", "degraded", "unhealthy")
        text = json.dumps(body)
        for leak in ("rss_mb", "path", "free", "latency_ms", "backend", "max_concurrent"):
            assert leak not in text, (path, leak)
        status, full, _ = await call(http, "GET", f"{url}{path}", API_KEY)
        assert status == 200
        assert "rss_mb" in full["components"]["memory"]
        assert set(full["components"]) == set(body["components"])

"""The auth plugin's hooks and pieces called directly (no server)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import jwt
import nexus_aio_auth
import pytest
from aiohttp.test_utils import make_mocked_request
from apispec import APISpec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from nexus_aio_auth import tokens
from nexus_aio_auth.config import SETTINGS, AuthConfig
from nexus_aio_auth.scopes import scope_allows
from nexus_aio_auth.tokens import Authenticator, bearer_token

from nexus_aio import Nexus
from nexus_aio.errors import ConfigurationError, Unauthorized
from nexus_aio.settings import Settings

SECRET = "test-secret-that-is-long-enough-for-hs256!"
KEYS = ["key-one-0123456789", "key-two-0123456789", "key-three-01234567"]


def config(**settings: Any) -> AuthConfig:
    settings.setdefault("auth_api_keys", KEYS)
    settings.setdefault("auth_jwt_secret", SECRET)
    return AuthConfig.from_settings(Settings.build(settings, environ={}, declared=SETTINGS))


def nexus(**settings: Any) -> Nexus:
    settings.setdefault("enable_auth", True)
    settings.setdefault("auth_api_keys", KEYS)
    return Nexus(database=":memory:", plugins=[nexus_aio_auth], load_entry_points=False, **settings)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- hooks --------------------------------------------------------------------------------
def test_permission_allowed_has_no_opinion_when_auth_is_disabled():
    app = Nexus(database=":memory:", load_entry_points=False)
    actor = {"id": "u", "scopes": []}
    assert nexus_aio_auth.permission_allowed(app, actor, "execute", "sum") is None


def test_permission_allowed_has_no_opinion_for_anonymous_requests():
    assert nexus_aio_auth.permission_allowed(nexus(), None, "execute", "sum") is None


def test_permission_allowed_execute_follows_the_workflow_scope():
    app = nexus()
    actor = {"id": "u", "scopes": ["execute:sum"]}
    assert nexus_aio_auth.permission_allowed(app, actor, "execute", "sum") is True
    assert nexus_aio_auth.permission_allowed(app, actor, "execute", "greet") is False
    assert nexus_aio_auth.permission_allowed(app, actor, "list", None) is False


def test_permission_allowed_fails_closed_for_an_actor_without_scopes():
    assert nexus_aio_auth.permission_allowed(nexus(), {"id": "u"}, "read", "sum") is False


@pytest.mark.parametrize(
    ("scopes", "action", "resource", "allowed"),
    [
        (["*"], "execute", "anything", True),
        (["*"], "cancel", "executions", True),
        (["execute:*"], "execute", "sum", True),
        (["execute:sum"], "execute", None, False),
        (["execute:sum"], "batch", None, True),
        (["read"], "batch", None, False),
        (["read"], "list", None, True),
        (["read"], "read", "plugins", True),
        (["read:plugins"], "read", "plugins", True),
        (["read:plugins"], "read", "sum", False),
        (["read"], "cancel", "executions", False),
        (["write"], "cancel", "executions", True),
        (["write"], "delete", "sessions", True),
        (["execute:*"], "delete", "sessions", True),
        (["execute:sum"], "cancel", "sum", True),
        ([], "read", "sum", False),
    ],
)
def test_scope_table(scopes, action, resource, allowed):
    assert scope_allows(scopes, action, resource) is allowed


def test_actor_from_request_returns_none_when_disabled_even_with_a_bad_token():
    app = Nexus(database=":memory:", load_entry_points=False)
    request = make_mocked_request("GET", "/", headers={"Authorization": "Bearer junk"})
    assert nexus_aio_auth.actor_from_request(app, request) is None


def test_actor_from_request_maps_api_key_and_jwt_and_refuses_junk():
    app = nexus(auth_jwt_secret=SECRET)
    key_request = make_mocked_request("GET", "/", headers={"Authorization": f"Bearer {KEYS[1]}"})
    actor = nexus_aio_auth.actor_from_request(app, key_request)
    short = hashlib.sha256(KEYS[1].encode()).hexdigest()[:16]
    assert actor == {"id": f"apikey:{short}", "type": "api_key", "scopes": ["*"]}
    token = jwt.encode({"sub": "bob", "exp": 2**31, "scope": "read execute:sum"}, SECRET)
    jwt_request = make_mocked_request("GET", "/", headers={"Authorization": f"bearer {token}"})
    actor = nexus_aio_auth.actor_from_request(app, jwt_request)
    assert actor["id"] == "bob"
    assert actor["scopes"] == ["read", "execute:sum"]
    assert actor["claims"]["exp"] == 2**31
    bad = make_mocked_request("GET", "/", headers={"Authorization": "Bearer junk"})
    with pytest.raises(Unauthorized):
        nexus_aio_auth.actor_from_request(app, bad)
    assert nexus_aio_auth.actor_from_request(app, make_mocked_request("GET", "/")) is None


def test_register_middlewares_adds_nothing_when_disabled_and_validates_when_enabled():
    assert nexus_aio_auth.register_middlewares(Nexus(database=":memory:")) is None
    assert len(nexus_aio_auth.register_middlewares(nexus())) == 1
    with pytest.raises(ConfigurationError):
        nexus_aio_auth.register_middlewares(nexus(auth_api_keys=[]))


def test_openapi_spec_adds_a_bearer_scheme_required_globally():
    spec = APISpec(title="t", version="1", openapi_version="3.1.0")
    nexus_aio_auth.openapi_spec(nexus(), spec)
    nexus_aio_auth.openapi_spec(nexus(), spec)  # idempotent
    doc = spec.to_dict()
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert doc["security"] == [{"bearerAuth": []}]


def test_openapi_spec_leaves_the_spec_alone_when_disabled():
    spec = APISpec(title="t", version="1", openapi_version="3.1.0")
    nexus_aio_auth.openapi_spec(Nexus(database=":memory:"), spec)
    assert "security" not in spec.to_dict()


def test_public_path_matcher_covers_subpaths_but_not_lookalikes():
    is_public = nexus_aio_auth.public_path_matcher(("/health",), "/api")
    assert is_public("/api/health")
    assert is_public("/api/health/ready")
    assert not is_public("/api/healthz")
    assert not is_public("/api/workflows")


# -- API keys: constant time by construction ----------------------------------------------
def test_api_key_comparison_uses_compare_digest_against_every_key(monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    auth = Authenticator(config())
    for presented in (KEYS[0], KEYS[2], "wrong-key"):
        calls.clear()
        auth.match_api_key(presented)
        assert len(calls) == len(KEYS)  # no early exit on the first match
        assert all(len(a) == len(b) == 32 for a, b in calls)  # digests: equal lengths
    assert auth.match_api_key(KEYS[0]) is not None
    assert auth.match_api_key("wrong-key") is None


def test_api_keys_never_appear_in_actors_or_logs(caplog):
    caplog.set_level("DEBUG")
    nexus_aio_auth.register_middlewares(nexus())
    auth = Authenticator(config())
    actors = [auth.match_api_key(k) for k in KEYS]
    for key in KEYS:
        assert key not in repr(actors)
        assert key not in caplog.text
    assert "3 API key(s)" in caplog.text


# -- JWT ------------------------------------------------------------------------------------
def test_verified_jwt_is_cached_until_it_expires(monkeypatch):
    clock = FakeClock(1000.0)
    auth = Authenticator(config(auth_jwt_leeway=0), clock=clock)
    decoded: list[str] = []
    real_decode = auth.decode

    def counting_decode(token: str) -> dict[str, Any]:
        decoded.append(token)
        claims: dict[str, Any] = real_decode(token)
        claims["exp"] = 1060  # the fake clock's timeline
        return claims

    monkeypatch.setattr(Authenticator, "decode", staticmethod(counting_decode))
    token = jwt.encode({"sub": "c", "exp": 2**31}, SECRET)
    first = auth.verify_jwt(token)
    assert auth.verify_jwt(token) is first
    assert len(decoded) == 1
    clock.now = 1061
    auth.verify_jwt(token)
    assert len(decoded) == 2


def test_jwt_scope_claim_may_be_a_list():
    auth = Authenticator(config())
    token = jwt.encode({"sub": "c", "exp": 2**31, "scope": ["read", "write"]}, SECRET)
    assert auth.verify_jwt(token)["scopes"] == ["read", "write"]


def test_jwt_without_sub_is_refused():
    auth = Authenticator(config())
    with pytest.raises(Unauthorized):
        auth.verify_jwt(jwt.encode({"exp": 2**31}, SECRET))


def test_leeway_accepts_a_token_that_just_expired():
    import time

    token = jwt.encode({"sub": "c", "exp": int(time.time()) - 5}, SECRET)
    assert Authenticator(config(auth_jwt_leeway=30)).verify_jwt(token)["id"] == "c"
    with pytest.raises(Unauthorized):
        Authenticator(config(auth_jwt_leeway=0)).verify_jwt(token)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Basic abc", None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Bearer", ""),
    ],
)
def test_bearer_token_parsing(header, token):
    assert bearer_token(header) == token


# -- configuration --------------------------------------------------------------------------
def test_config_defaults():
    cfg = config()
    assert cfg.jwt_algorithms == ("HS256",)
    assert cfg.public_paths == ("/health",)
    assert cfg.jwt_leeway == 10.0


def test_config_reads_environment():
    env = {
        "NEXUS_AUTH_API_KEYS": "a-key-long-enough, b-key-long-enough",
        "NEXUS_AUTH_PUBLIC_PATHS": "/health,/docs/,openapi.json",
        "NEXUS_AUTH_JWT_LEEWAY": "2.5",
    }
    cfg = AuthConfig.from_settings(Settings.build({}, environ=env, declared=SETTINGS))
    assert cfg.api_keys == ("a-key-long-enough", "b-key-long-enough")
    assert cfg.public_paths == ("/docs", "/health", "/openapi.json")
    assert cfg.jwt_leeway == 2.5
    assert not cfg.jwt_enabled


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"auth_api_keys": [], "auth_jwt_secret": None}, "no credentials"),
        ({"auth_jwt_algorithms": ["none"]}, "not allowed"),
        ({"auth_jwt_algorithms": ["HS256", "none"]}, "never 'none'"),
        ({"auth_jwt_algorithms": ["RS256"]}, "PUBLIC_KEY"),
        ({"auth_jwt_secret": "x" * 40, "auth_jwt_algorithms": ["HS512"]}, "too short"),
        ({"auth_jwt_public_key": "not a pem"}, "not a PEM"),
        ({"auth_jwt_leeway": -1}, ">= 0"),
    ],
)
def test_config_refuses_unsafe_settings(settings, message):
    with pytest.raises(ConfigurationError, match=message):
        config(**settings)


def test_ec_public_key_defaults_to_es256_and_verifies():
    private = ec.generate_private_key(ec.SECP256R1())
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    cfg = config(auth_jwt_secret=None, auth_api_keys=[], auth_jwt_public_key=pem)
    assert cfg.jwt_algorithms == ("ES256",)
    token = jwt.encode({"sub": "ec", "exp": 2**31}, private, algorithm="ES256")
    assert Authenticator(cfg).verify_jwt(token)["id"] == "ec"

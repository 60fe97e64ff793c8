"""Bearer credentials to actors: API keys (constant-time) and JWTs (PyJWT, algorithms pinned).

Built once per app from an :class:`AuthConfig`; per request it does a header split, one SHA-256
and one ``hmac.compare_digest`` per configured key, plus (for a JWT seen before) a dict lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import jwt

from nexus_aio.errors import Unauthorized

from .config import HMAC_ALGORITHMS, AuthConfig, load_public_key

Actor = dict[str, Any]
INVALID_TOKEN = "Invalid or expired token"
JWT_CACHE_SIZE = 4096
# API key actors are "apikey:<16 hex digits of the key's SHA-256>" (64 bits). No JWT may claim a
# subject in that namespace, so no token can pass for a key (and read its executions).
API_KEY_PREFIX = "apikey:"
API_KEY_ID_HEX = 16


def invalid_token(reason: str, description: str) -> Unauthorized:
    """401 with RFC 6750's ``error="invalid_token"``; the reason never echoes the token."""
    challenge = f'Bearer error="invalid_token", error_description="{description}"'
    return Unauthorized(
        INVALID_TOKEN, details={"reason": reason}, headers={"WWW-Authenticate": challenge}
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for no or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def api_key_actor(key: str) -> Actor:
    """The actor of a configured API key: named by 64 bits of its hash, never by the key."""
    short = hashlib.sha256(key.encode()).hexdigest()[:API_KEY_ID_HEX]
    return {"id": f"{API_KEY_PREFIX}{short}", "type": "api_key", "scopes": ["*"]}


def jwt_scopes(scope: Any) -> list[str]:
    """The OAuth 2 ``scope`` claim (space-separated) or a list of strings; anything else: 401."""
    if scope is None:
        return []
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        return list(scope)
    raise invalid_token("scope", "The scope claim must be a string or a list of strings")


def jwt_actor(claims: dict[str, Any]) -> Actor:
    """``sub`` is the id (never one in the API keys' namespace); scopes from ``scope``."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise invalid_token("subject", "The sub claim must be a non-empty string")
    if sub.startswith(API_KEY_PREFIX):
        raise invalid_token("subject", "The sub claim is in the namespace reserved for API keys")
    scopes = jwt_scopes(claims.get("scope"))
    return {"id": sub, "type": "jwt", "scopes": scopes, "claims": claims}


class Authenticator:
    """Turns a bearer token into an actor, or raises ``Unauthorized``.

    API keys are compared as SHA-256 digests (equal lengths) with ``hmac.compare_digest``
    against every configured key, without an early exit, so the time taken does not depend on
    which key matched or how much of a prefix did. Verified JWTs are cached until they expire
    (a bounded dict) because signature checks dominate the cost of an authenticated request.
    """

    __slots__ = (
        "_algorithms",
        "_audience",
        "_cache",
        "_clock",
        "_issuer",
        "_keys",
        "_leeway",
        "_public_key",
        "_secret",
        "config",
    )

    def __init__(self, config: AuthConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._keys: tuple[tuple[bytes, Actor], ...] = tuple(
            (hashlib.sha256(key.encode()).digest(), api_key_actor(key)) for key in config.api_keys
        )
        self._algorithms = frozenset(config.jwt_algorithms) if config.jwt_enabled else frozenset()
        self._secret = config.jwt_secret
        self._public_key = load_public_key(config.jwt_public_key) if config.jwt_public_key else None
        self._issuer = config.jwt_issuer
        self._audience = config.jwt_audience
        self._leeway = config.jwt_leeway
        self._clock = clock
        self._cache: dict[str, tuple[Actor, float]] = {}

    def authenticate(self, authorization: str | None) -> Actor | None:
        """None without bearer credentials; the actor for a valid token; else ``Unauthorized``."""
        token = bearer_token(authorization)
        if token is None:
            return None
        if not token:
            raise invalid_token("malformed", "The bearer token is empty")
        if self._keys:
            actor = self.match_api_key(token)
            if actor is not None:
                return actor
        if self._algorithms and token.count(".") == 2:
            return self.verify_jwt(token)
        raise invalid_token("invalid", "The token is not valid")

    def match_api_key(self, token: str) -> Actor | None:
        """The matching key's actor; every key is compared, whatever matched first."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for key_digest, actor in self._keys:
            if hmac.compare_digest(digest, key_digest):
                found = actor
        return found

    def verify_jwt(self, token: str) -> Actor:
        """The actor for a valid JWT (cached until ``exp`` + leeway), else ``Unauthorized``."""
        cached = self._cache.get(token)
        if cached is not None:
            if self._clock() < cached[1]:
                return cached[0]
            self._cache.pop(token, None)
        claims = self.decode(token)
        actor = jwt_actor(claims)
        if len(self._cache) >= JWT_CACHE_SIZE:
            self._cache.clear()
        self._cache[token] = (actor, float(claims["exp"]) + self._leeway)
        return actor

    def decode(self, token: str) -> dict[str, Any]:
        """Verify signature, ``exp`` (required), ``sub`` (required), ``iss`` and ``aud``."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
            if alg not in self._algorithms:
                raise invalid_token("algorithm", "The token's algorithm is not accepted")
            key: Any = self._secret if alg in HMAC_ALGORITHMS else self._public_key
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                options={"require": ["exp", "sub"]},
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise invalid_token("expired", "The token has expired") from None
        except jwt.PyJWTError:
            raise invalid_token("invalid", "The token is not valid") from None
        return claims

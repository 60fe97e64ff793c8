"""Auth settings, read once from the app's settings and checked before the app serves.

Everything that can be wrong with the configuration is found here, at app build, so a
misconfigured server refuses to start instead of refusing (or worse, admitting) requests later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nexus_aio import Setting
from nexus_aio.errors import ConfigurationError

HMAC_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}  # minimum secret bytes (RFC 7518 3.2)
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_PUBLIC_PATHS = ("/health",)
DEFAULT_LEEWAY = 10.0
MIN_API_KEY_LENGTH = 16  # characters: a shorter key is guessable

# The auth feature's settings (``register_settings``): constructor keyword, ``app.api.auth_*``,
# ``NEXUS_AUTH_*``. ``feature="auth"`` is what makes this plugin the provider of ``enable_auth``.
SETTINGS = (
    Setting("auth_api_keys", list[str], [], feature="auth", help="accepted bearer API keys"),
    Setting("auth_jwt_secret", str | None, None, feature="auth", help="HMAC secret for JWTs"),
    Setting(
        "auth_jwt_public_key",
        str | None,
        None,
        feature="auth",
        help="PEM public key for RS/PS/ES/EdDSA JWTs (literal \\n accepted for newlines)",
    ),
    Setting(
        "auth_jwt_algorithms",
        list[str],
        [],
        feature="auth",
        help="accepted JWT algorithms; empty: implied by the secret and the key type",
    ),
    Setting("auth_jwt_issuer", str | None, None, feature="auth", help="required `iss` claim"),
    Setting("auth_jwt_audience", str | None, None, feature="auth", help="required `aud` claim"),
    Setting(
        "auth_jwt_leeway",
        float,
        DEFAULT_LEEWAY,
        feature="auth",
        help="seconds of clock skew allowed on `exp`/`nbf`",
    ),
    Setting(
        "auth_public_paths",
        list[str],
        list(DEFAULT_PUBLIC_PATHS),
        feature="auth",
        help="paths (and everything below them) served without credentials",
    ),
)


def split_list(value: Any) -> list[str]:
    """A comma-separated string or an iterable of strings as a clean list."""
    if value is None:
        return []
    if isinstance(value, str):
        parts: Iterable[Any] = value.split(",")
    else:
        parts = value
    return [str(p).strip() for p in parts if str(p).strip()]


def normalize_path(path: str) -> str:
    path = "/" + path.strip().strip("/")
    return path


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The auth plugin's settings, validated (see docs/security.md)."""

    api_keys: tuple[str, ...]
    jwt_secret: str | None
    jwt_public_key: str | None
    jwt_algorithms: tuple[str, ...]
    jwt_issuer: str | None
    jwt_audience: str | None
    jwt_leeway: float
    public_paths: tuple[str, ...]

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key)

    @classmethod
    def from_settings(cls, settings: Any) -> AuthConfig:
        """Read the ``auth_*`` settings (:data:`SETTINGS`); an empty string counts as unset."""
        secret = settings.auth_jwt_secret or None
        public_key = settings.auth_jwt_public_key or None
        algorithms = split_list(settings.auth_jwt_algorithms)
        if not algorithms:
            algorithms = default_algorithms(secret, public_key)
        config = cls(
            api_keys=tuple(split_list(settings.auth_api_keys)),
            jwt_secret=secret,
            jwt_public_key=public_key,
            jwt_algorithms=tuple(algorithms),
            jwt_issuer=settings.auth_jwt_issuer or None,
            jwt_audience=settings.auth_jwt_audience or None,
            jwt_leeway=float(settings.auth_jwt_leeway),
            public_paths=tuple(
                sorted({normalize_path(p) for p in split_list(settings.auth_public_paths)})
            ),
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Fail closed: no credentials, ``none`` or unknown algorithms, short secrets."""
        if not self.api_keys and not self.jwt_enabled:
            raise ConfigurationError(
                "enable_auth is on but no credentials are configured: set NEXUS_AUTH_API_KEYS, "
                "NEXUS_AUTH_JWT_SECRET or NEXUS_AUTH_JWT_PUBLIC_KEY (refusing to start open)"
            )
        for index, key in enumerate(self.api_keys):
            if len(key) < MIN_API_KEY_LENGTH:
                raise ConfigurationError(
                    f"auth_api_keys: key #{index + 1} is {len(key)} characters long; API keys "
                    f"must have at least {MIN_API_KEY_LENGTH} (make one with: python -c "
                    "'import secrets; print(secrets.token_urlsafe(32))')"
                )
        if self.jwt_leeway < 0:
            raise ConfigurationError(f"auth_jwt_leeway must be >= 0, got {self.jwt_leeway!r}")
        if self.jwt_enabled:
            self._validate_algorithms()

    def _validate_algorithms(self) -> None:
        if not self.jwt_algorithms:
            raise ConfigurationError("auth_jwt_algorithms is empty")
        for alg in self.jwt_algorithms:
            if alg in HMAC_ALGORITHMS:
                self._validate_secret(alg)
            elif alg in PUBLIC_KEY_ALGORITHMS:
                if not self.jwt_public_key:
                    raise ConfigurationError(
                        f"JWT algorithm {alg} needs NEXUS_AUTH_JWT_PUBLIC_KEY (a PEM public key)"
                    )
            else:
                allowed = ", ".join([*HMAC_ALGORITHMS, *sorted(PUBLIC_KEY_ALGORITHMS)])
                raise ConfigurationError(
                    f"JWT algorithm {alg!r} is not allowed (allowed: {allowed}; never 'none')"
                )

    def _validate_secret(self, alg: str) -> None:
        if not self.jwt_secret:
            raise ConfigurationError(f"JWT algorithm {alg} needs NEXUS_AUTH_JWT_SECRET")
        minimum = HMAC_ALGORITHMS[alg]
        if len(self.jwt_secret.encode()) < minimum:
            raise ConfigurationError(
                f"NEXUS_AUTH_JWT_SECRET is too short for {alg}: use at least {minimum} bytes"
            )


def default_algorithms(secret: str | None, public_key: str | None) -> list[str]:
    """HS256 for a secret; for a public key, the algorithm its key type implies."""
    algorithms = []
    if secret:
        algorithms.append("HS256")
    if public_key:
        algorithms.append(algorithm_for_public_key(public_key))
    return algorithms


def algorithm_for_public_key(pem: str) -> str:
    """RS256 for RSA keys, ES256/384/512 by curve, EdDSA for Ed25519/Ed448."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    key = load_public_key(pem)
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
        raise ConfigurationError(f"unsupported elliptic curve for JWT: {key.curve.name}")
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA"
    raise ConfigurationError(f"unsupported public key type for JWT: {type(key).__name__}")


def load_public_key(pem: str) -> Any:
    """Parse a PEM public key once (PyJWT would parse a PEM string on every decode)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        # An environment variable often carries the PEM with literal "\\n" for newlines.
        return load_pem_public_key(pem.strip().replace("\\n", "\n").encode())
    except ValueError as exc:
        raise ConfigurationError(
            f"NEXUS_AUTH_JWT_PUBLIC_KEY is not a PEM public key: {exc}"
        ) from None

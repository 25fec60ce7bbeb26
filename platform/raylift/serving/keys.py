"""API keys for a served application: read from an env var or a file, never from the spec.

Clients send ``Authorization: Bearer KEY`` (what the OpenAI client sends) or
``X-API-Key: KEY``. Keys are kept only as SHA-256 digests and compared in
constant time; they never appear in logs, metrics or error messages.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from raylift.errors import SpecError
from raylift.specs.serve import Auth


def read_api_keys(auth: Auth) -> list[str]:
    """The configured keys (none when auth is off); missing or empty sources are errors."""
    keys: list[str] = []
    if auth.api_keys_env:
        value = os.environ.get(auth.api_keys_env, "")
        found = [k.strip() for k in value.split(",") if k.strip()]
        if not found:
            raise SpecError(
                f"environment variable {auth.api_keys_env} is not set or holds no keys "
                "(comma-separated); set it where the server runs, or drop auth.api_keys_env",
                key="auth.api_keys_env",
            )
        keys += found
    if auth.api_keys_file:
        path = os.path.expanduser(auth.api_keys_file)
        try:
            with open(path, encoding="utf-8") as lines:
                found = [
                    line.strip() for line in lines if line.strip() and not line.startswith("#")
                ]
        except OSError as exc:
            raise SpecError(
                f"cannot read the API key file {path}: {exc.strerror}", key="auth.api_keys_file"
            ) from None
        if not found:
            raise SpecError(f"the API key file {path} holds no keys", key="auth.api_keys_file")
        keys += found
    return keys


class KeyCheck:
    """Checks a request's headers against the keys' digests."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [_digest(k) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def allows(self, headers: dict[str, str] | object) -> bool:
        if not self._digests:
            return True
        get = getattr(headers, "get", None)
        if get is None:
            return False
        given = None
        authorization = get("authorization") or ""
        if authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        given = given or (get("x-api-key") or "").strip()
        if not given:
            return False
        digest = _digest(given)
        return any(hmac.compare_digest(digest, known) for known in self._digests)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()

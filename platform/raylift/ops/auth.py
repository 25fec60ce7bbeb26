"""Ray token authentication: find the token the way Ray does, create one safely.

Ray 2.60 authenticates every RPC and dashboard/Jobs API request with a shared
token when ``RAY_AUTH_MODE=token``. A client finds the token in
``RAY_AUTH_TOKEN``, else the file named by ``RAY_AUTH_TOKEN_PATH``, else
``~/.ray/auth_token``. raylift turns token mode on by default for everything it
starts or talks to; set ``RAY_AUTH_MODE=disabled`` to talk to a cluster without
authentication.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from raylift.errors import AuthError

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # where it came from, for messages (never the token itself)


def default_token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


def token_mode_on() -> bool:
    """Token authentication unless the user turned it off (raylift's default: on)."""
    return os.environ.get(AUTH_MODE_ENV, "token").strip().lower() == "token"


def use_token_mode() -> None:
    """Default ``RAY_AUTH_MODE`` to ``token`` in this process (before Ray is imported)."""
    os.environ.setdefault(AUTH_MODE_ENV, "token")


def find_token() -> Token | None:
    """The token Ray would use in this environment, or None."""
    value = os.environ.get(TOKEN_ENV, "").strip()
    if value:
        return Token(value, f"${TOKEN_ENV}")
    named = os.environ.get(TOKEN_PATH_ENV, "").strip()
    path = Path(named).expanduser() if named else default_token_path()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if named:
            raise AuthError(
                f"${TOKEN_PATH_ENV} names {str(path)!r}, which does not exist"
            ) from None
        return None
    except OSError as exc:
        raise AuthError(f"cannot read the Ray auth token file {str(path)!r}: {exc}") from None
    return Token(value, str(path)) if value else None


def require_token() -> Token | None:
    """The token when token mode is on (an error if there is none), else None."""
    if not token_mode_on():
        return None
    token = find_token()
    if token is None:
        raise AuthError(
            f"no Ray auth token: set ${TOKEN_ENV} or ${TOKEN_PATH_ENV}, or put the cluster's "
            f"token in {default_token_path()} (or set {AUTH_MODE_ENV}=disabled for a cluster "
            "without authentication)"
        )
    return token


def ensure_token_file(path: Path) -> Path:
    """A token file at ``path`` readable by its owner only; created with a new token if absent."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_hex(32))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)
    if not path.read_text(encoding="utf-8").strip():
        raise AuthError(f"the Ray auth token file {str(path)!r} is empty")
    return path


def auth_headers() -> dict[str, str]:
    """HTTP headers that authenticate to a Ray dashboard (empty when token mode is off)."""
    token = require_token()
    return {"Authorization": f"Bearer {token.value}"} if token else {}

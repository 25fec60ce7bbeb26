"""Ray auth token discovery and creation, without a cluster."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from raylift.errors import AuthError
from raylift.ops import auth


@pytest.fixture
def no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    monkeypatch.delenv(auth.TOKEN_PATH_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(auth.AUTH_MODE_ENV, "token")
    return tmp_path


def test_token_lookup_follows_rays_order(no_token: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth.find_token() is None
    with pytest.raises(AuthError, match="RAY_AUTH_TOKEN_PATH"):
        auth.require_token()
    home_file = no_token / ".ray" / "auth_token"
    home_file.parent.mkdir()
    home_file.write_text("from-home\n")
    assert auth.find_token() == auth.Token("from-home", str(home_file))
    named = no_token / "named"
    named.write_text("from-path")
    monkeypatch.setenv(auth.TOKEN_PATH_ENV, str(named))
    assert auth.find_token().value == "from-path"
    monkeypatch.setenv(auth.TOKEN_ENV, "from-env")
    token = auth.find_token()
    assert token.value == "from-env" and token.source == "$RAY_AUTH_TOKEN"
    monkeypatch.delenv(auth.TOKEN_ENV)
    monkeypatch.setenv(auth.TOKEN_PATH_ENV, str(no_token / "missing"))
    with pytest.raises(AuthError, match="does not exist"):
        auth.find_token()
    monkeypatch.setenv(auth.AUTH_MODE_ENV, "disabled")
    assert auth.require_token() is None and auth.auth_headers() == {}


def test_token_file_is_created_private_and_kept(no_token: Path) -> None:
    path = no_token / "cluster" / "token"
    auth.ensure_token_file(path)
    first = path.read_text()
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # e.g. written by an older Ray
    auth.ensure_token_file(path)
    assert path.read_text() == first and stat.S_IMODE(path.stat().st_mode) == 0o600

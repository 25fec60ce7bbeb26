"""API keys: read from the environment or a file, and checked on each request."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.errors import SpecError
from raylift.serving.keys import KeyCheck, read_api_keys
from raylift.specs.serve import Auth


def test_api_keys_come_from_env_or_file_and_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# ops team\nfile-key\n\n")
    monkeypatch.setenv("MY_KEYS", "env-a, env-b")
    keys = read_api_keys(Auth(api_keys_env="MY_KEYS", api_keys_file=str(keys_file)))
    assert keys == ["env-a", "env-b", "file-key"]
    check = KeyCheck(keys)
    assert check.allows({"authorization": "Bearer env-b"})
    assert check.allows({"x-api-key": "file-key"})
    assert not check.allows({"authorization": "Bearer nope"})
    assert not check.allows({})
    assert KeyCheck([]).allows({})  # auth off
    monkeypatch.setenv("MY_KEYS", " , ")
    with pytest.raises(SpecError, match="MY_KEYS is not set or holds no keys"):
        read_api_keys(Auth(api_keys_env="MY_KEYS"))
    with pytest.raises(SpecError, match="cannot read the API key file"):
        read_api_keys(Auth(api_keys_file=str(tmp_path / "missing")))

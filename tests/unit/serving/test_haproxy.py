"""The HAProxy settings of an embedded Ray: private files and ports, loopback-only listeners."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from raylift.errors import ServeError
from raylift.serving import haproxy

# Lines as Ray 2.60's template renders them.
CONFIG = """\
global
    stats socket /x/admin.sock mode 666 level admin expose-fd listeners
frontend prometheus
    bind :9101
frontend http_frontend
    bind 127.0.0.1:8000
listen stats
  bind *:8404
"""


def test_the_wrapper_moves_wildcard_binds_to_loopback_and_keeps_the_rest(tmp_path: Path) -> None:
    fake = tmp_path / "real-haproxy"
    fake.write_text('#!/bin/sh\necho "args: $*"\nshift 2\ncat "$1"\n')  # skips "-db -f"
    fake.chmod(stat.S_IRWXU)
    wrapper = haproxy.write_wrapper(tmp_path, str(fake))
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG)

    ran = subprocess.run(
        [str(wrapper), "-db", "-f", str(config), "-sf", "123", "456"],
        capture_output=True,
        text=True,
        check=True,
    )
    first, *rendered = ran.stdout.splitlines()
    assert first == f"args: -db -f {config}.local -sf 123 456"
    binds = [line.strip() for line in rendered if line.strip().startswith("bind")]
    assert binds == ["bind 127.0.0.1:9101", "bind 127.0.0.1:8000", "bind 127.0.0.1:8404"]
    assert config.read_text() == CONFIG  # Ray's own file is left as Ray wrote it
    assert wrapper.stat().st_mode & 0o777 == 0o700


def test_embedded_env_is_private_and_uses_free_ports() -> None:
    env = haproxy.embedded_env()
    folder = Path(haproxy.private_folder(env))
    try:
        _check_private(env, folder)
    finally:
        shutil.rmtree(folder)


def test_a_folder_too_deep_for_haproxys_socket_paths_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServeError, match="shorter parent folder"):
        haproxy.embedded_env(str(tmp_path))  # /tmp/pytest-of-.../...: too long
    assert list(tmp_path.iterdir()) == []


def _check_private(env: dict[str, str], folder: Path) -> None:
    assert env[haproxy.ENABLE] == "1"
    assert folder.parent == Path("/tmp") and folder.stat().st_mode & 0o777 == 0o700
    for key in haproxy.PRIVATE_FILES:
        assert Path(env[key]).is_relative_to(folder), key
    ports = [int(env[key]) for key in haproxy.PRIVATE_PORTS]
    assert len(set(ports)) == len(ports) and all(p > 1024 for p in ports)
    assert Path(env[haproxy.BINARY]) == folder / haproxy.WRAPPER
    assert haproxy.real_binary() in (folder / haproxy.WRAPPER).read_text()

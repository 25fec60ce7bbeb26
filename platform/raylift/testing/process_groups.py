"""Helpers for the e2e tests that kill a `raylift` process group mid-run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

# Ray's raylet starts these agents in their own sessions: a SIGKILL to the
# driver's process group (a crashed `raylift train`/`tune`) leaves them running,
# orphaned, holding ports and memory.
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def kill_process_group_and_its_ray(process: subprocess.Popen[bytes], since: float) -> None:
    """SIGKILL ``process``'s group, then the Ray agents it orphaned (started after
    ``since``, now children of init)."""
    import psutil

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        orphans = [
            p
            for p in psutil.process_iter(["name", "cmdline", "ppid", "create_time"])
            if p.info["create_time"] >= since
            and p.info["ppid"] == 1
            and " ".join(p.info["cmdline"] or []).startswith(RAY_AGENTS)
        ]
        if not orphans:
            return
        for orphan in orphans:
            with contextlib.suppress(psutil.NoSuchProcess):
                orphan.kill()
        time.sleep(0.5)

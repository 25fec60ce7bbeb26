"""Submit raylift specs as Ray jobs and manage them through the Ray Jobs API.

A submission ships a working directory (the current one by default: the spec
and any code or data files it names, as ``raylift train`` would find them
locally) as the job's ``runtime_env``; the entrypoint on the cluster is
``raylift train SPEC --set ...``, so the cluster resolves the storage defaults
itself. Every call goes through ``JobSubmissionClient`` with Ray's token
authentication, after a quick reachability check (Ray's client has no connect
timeout, so a wrong address would otherwise hang).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from raylift.errors import (
    AuthError,
    ClusterError,
    JobError,
    SpecError,
    UnknownJobError,
    UsageError,
)
from raylift.ops.auth import find_token, require_token, token_mode_on, use_token_mode
from raylift.ray_compat.runtime_env import create_package, package_limit_bytes

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
CONNECT_TIMEOUT_S = 3.0
MAX_WORKING_DIR_ENV = "RAYLIFT_MAX_WORKING_DIR_MIB"
DEFAULT_MAX_WORKING_DIR_MIB = 100
# Never shipped: virtualenvs, VCS data, caches, local run output.
DEFAULT_EXCLUDES = [
    ".git",
    ".venv",
    "venv",
    "**/__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
]


@dataclass(frozen=True)
class Submission:
    entrypoint: str
    runtime_env: dict[str, Any]
    submission_id: str
    metadata: dict[str, str]
    package_bytes: int


def dashboard_address(address: str | None) -> str:
    """``--address``, else ``$RAY_API_SERVER_ADDRESS`` then ``$RAY_ADDRESS`` (as Ray's job
    CLI reads them), else the dev cluster ``dev`` if it runs here."""
    chosen = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not chosen:
        from raylift.ops.devcluster import cluster_processes, load

        cluster = load("dev")
        if cluster is not None and cluster_processes(cluster):
            return cluster.dashboard_url
        raise UsageError(
            "no cluster address: pass --address http://HOST:8265 or set RAY_ADDRESS "
            "(or start one with `raylift cluster up`)",
            option="--address",
        )
    if "://" not in chosen:
        chosen = "http://" + chosen
    parts = urlsplit(chosen)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"{chosen!r} is not a Ray dashboard address; use http://HOST:8265", option="--address"
        )
    return chosen.rstrip("/")


def check_reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 8265)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterError(
            f"cannot reach the Ray dashboard at {url} ({reason}); is the cluster up "
            "and the address right?"
        ) from None


@contextmanager
def jobs_api_errors(url: str) -> Iterator[None]:
    """Ray's client exceptions -> one raylift error with a clear line."""
    try:
        yield
    except (ClusterError, SpecError, UsageError, JobError):
        raise
    except ConnectionError as exc:
        raise ClusterError(f"lost the connection to {url}: {exc}") from None
    except Exception as exc:
        text = str(exc)
        lowered = text.lower()
        if type(exc).__name__ == "AuthenticationError" or any(
            marker in lowered for marker in ("401", "403", "unauthorized", "authentication")
        ):
            token = find_token()
            source = f"the token from {token.source}" if token else "no token"
            raise AuthError(
                f"{url} refused the request ({source}): {_first_line(text)}. Use the "
                "cluster's token via RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
            ) from None
        if "version check" in lowered or "jobs api is not supported" in lowered:
            raise ClusterError(
                f"{url} does not answer like a Ray dashboard ({_first_line(text)}); "
                "is this the dashboard port (8265 by default)?"
            ) from None
        if "does not exist" in lowered or "not found" in lowered or "404" in lowered:
            raise UnknownJobError(_first_line(text)) from None
        raise JobError(f"the Jobs API at {url} failed: {_first_line(text)}") from None


def quiet_ray_client_logs() -> None:
    """Ray configures its loggers at import (INFO: packaging, uploads, websockets)."""
    import logging

    import ray.dashboard.modules.dashboard_sdk
    import ray.job_submission  # noqa: F401  (these imports set the levels overridden here)

    if logging.getLogger("raylift").isEnabledFor(logging.DEBUG):
        return
    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no details"
    return line[:limit]


class JobsClient:
    """``JobSubmissionClient`` for one cluster, with raylift's errors."""

    def __init__(self, address: str | None = None) -> None:
        use_token_mode()
        self.url = dashboard_address(address)
        check_reachable(self.url)
        require_token()
        quiet_ray_client_logs()
        from ray.job_submission import JobSubmissionClient

        with jobs_api_errors(self.url):
            self.client = JobSubmissionClient(self.url)

    def submit(self, submission: Submission) -> str:
        with jobs_api_errors(self.url):
            return str(
                self.client.submit_job(
                    entrypoint=submission.entrypoint,
                    runtime_env=submission.runtime_env,
                    submission_id=submission.submission_id,
                    metadata=submission.metadata,
                )
            )

    def list(self) -> list[Any]:
        with jobs_api_errors(self.url):
            jobs = self.client.list_jobs()
        return sorted(jobs, key=lambda job: job.start_time or 0)

    def info(self, job_id: str) -> Any:
        try:
            with jobs_api_errors(self.url):
                return self.client.get_job_info(job_id)
        except UnknownJobError:
            raise UnknownJobError(
                f"no job {job_id!r} on {self.url} (`raylift jobs list` shows them)"
            ) from None

    def status(self, job_id: str) -> str:
        return str(self.info(job_id).status.value)

    def logs(self, job_id: str) -> str:
        with jobs_api_errors(self.url):
            return str(self.client.get_job_logs(job_id))

    def follow(self, job_id: str, write: Callable[[str], None]) -> str:
        """Stream the job's logs to ``write`` until it ends; its final status."""
        self.info(job_id)  # an unknown id fails here, with a clear error

        async def tail() -> None:
            async for lines in self.client.tail_job_logs(job_id):
                write(lines)

        with jobs_api_errors(self.url):
            asyncio.run(tail())
        return self.wait(job_id, timeout=30.0)

    def stop(self, job_id: str) -> bool:
        """Ask Ray to stop the job (SIGTERM to its driver); False if it had ended."""
        self.info(job_id)
        with jobs_api_errors(self.url):
            return bool(self.client.stop_job(job_id))

    def wait(self, job_id: str, timeout: float | None = None, poll_s: float = 1.0) -> str:
        """Block until the job ends; its final status (or the last seen on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if status in TERMINAL:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return status
            time.sleep(poll_s)


# --------------------------------------------------------------------------- submission


def build_submission(
    file: str,
    overrides: list[str],
    *,
    working_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    excludes: list[str] | None = None,
) -> Submission:
    """Validate the spec here and describe the Ray job that trains it; sends nothing."""
    use_token_mode()  # before Ray is first imported
    quiet_ray_client_logs()
    from raylift.specs.loader import read_yaml
    from raylift.training.interrupts import STOP_WAIT_S

    root = Path(working_dir or os.getcwd()).resolve()
    if not root.is_dir():
        raise UsageError(f"{str(root)!r} is not a directory", option="--working-dir")
    relative = _inside(root, file)
    kind = read_yaml(file)[0].get("kind", "train")
    if kind == "sweep":
        from raylift.tuning.sweep import load_sweep

        loaded = load_sweep(file, overrides)
        _inside(root, str(Path(file).parent / loaded.sweep.base))
        name, command = loaded.sweep.name, ["raylift", "tune", relative]
        if overwrite:
            raise UsageError("a sweep cannot be overwritten; --set name=NEW", option="--overwrite")
    else:
        from raylift.specs import check_data_files, load_spec

        spec = load_spec(file, overrides)
        check_data_files(spec, file=file)
        name, command = spec.name, ["raylift", "train", relative]
        if overwrite:
            command.append("--overwrite")
    command += [f"--set={o}" for o in overrides]
    if resume:
        command.append("--resume")
    all_excludes = DEFAULT_EXCLUDES + list(excludes or [])
    size = check_package_size(root, all_excludes)
    env_vars = {
        # Ray's grace between SIGTERM and SIGKILL on `jobs stop`: time to checkpoint.
        "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S),
        "PYTHONUNBUFFERED": "1",
    }
    if not token_mode_on():
        env_vars["RAY_AUTH_MODE"] = os.environ.get("RAY_AUTH_MODE", "disabled")
    return Submission(
        entrypoint=shlex.join(command),
        runtime_env={"working_dir": str(root), "excludes": all_excludes, "env_vars": env_vars},
        submission_id=f"raylift-{name}-{uuid.uuid4().hex[:8]}",
        metadata={"raylift_run": name, "raylift_kind": kind, "raylift_spec": relative},
        package_bytes=size,
    )


def _inside(root: Path, file: str) -> str:
    """``file`` relative to the working dir ``root`` (a UsageError if it is outside)."""
    path = Path(file).resolve()
    if not path.is_relative_to(root):
        raise UsageError(
            f"{file} is outside the working directory {root}; run from a folder that holds "
            "it or pass --working-dir",
            option="--working-dir",
        )
    return path.relative_to(root).as_posix()


def max_package_bytes() -> int:
    raw = os.environ.get(MAX_WORKING_DIR_ENV, str(DEFAULT_MAX_WORKING_DIR_MIB))
    try:
        ours = int(float(raw) * 1024 * 1024)
    except ValueError:
        raise UsageError(f"${MAX_WORKING_DIR_ENV}={raw!r} is not a number of MiB") from None
    return min(ours, package_limit_bytes())


def check_package_size(root: Path, excludes: list[str]) -> int:
    """Pack ``root`` the way Ray will (its excludes, .gitignore, .rayignore); its size."""
    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    with tempfile.TemporaryDirectory(prefix="raylift-pkg-") as tmp:
        target = Path(tmp) / "package.zip"
        create_package(root, target, include_gitignore=include_gitignore, excludes=excludes)
        size = target.stat().st_size
        limit = max_package_bytes()
        if size <= limit:
            return size
        with zipfile.ZipFile(target) as archive:
            biggest = sorted(archive.infolist(), key=lambda info: info.compress_size)[-3:]
    largest = ", ".join(f"{i.filename} ({i.compress_size / 2**20:.1f} MiB)" for i in biggest[::-1])
    raise UsageError(
        f"the working directory {root} packs to {size / 2**20:.1f} MiB, over the "
        f"{limit / 2**20:.0f} MiB a job's runtime_env may carry (largest: {largest}); "
        "exclude files with --exclude, .gitignore or .rayignore, or keep data on shared "
        "storage",
        option="--working-dir",
    )


def exit_code(status: str) -> int:
    """0 succeeded, 1 failed, 3 stopped; 0 for a job still pending or running."""
    return EXIT_CODES.get(status, 0)

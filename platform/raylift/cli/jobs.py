"""``raylift submit`` and ``raylift jobs list|status|logs|stop|wait`` (the Ray Jobs API)."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from raylift.cli.common import console, err_console, handle_errors, set_option
from raylift.errors import JobError

WAIT_TIMEOUT_EXIT = 124


def _address_option(func):  # type: ignore[no-untyped-def]
    return click.option(
        "--address",
        default=None,
        metavar="URL",
        help="Ray dashboard / Jobs API, e.g. http://HOST:8265 (default: "
        "$RAY_API_SERVER_ADDRESS, then $RAY_ADDRESS, else the local dev cluster).",
    )(func)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _finish(job_id: str, status: str) -> None:
    from raylift.ops.jobs import exit_code

    err_console.print(f"job {job_id}: {status}", highlight=False)
    sys.exit(exit_code(status))


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_address_option
@set_option
@click.option(
    "--working-dir",
    default=None,
    metavar="DIR",
    help="Folder shipped with the job (default: the current one); FILE must be inside it.",
)
@click.option("--exclude", "excludes", multiple=True, metavar="PATTERN", help="Leave out files.")
@click.option("--resume", is_flag=True, help="Continue the run of the same name.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run of the same name.")
@click.option("--follow", is_flag=True, help="Stream the job's logs until it ends.")
@handle_errors
def submit(
    file: str,
    address: str | None,
    overrides: tuple[str, ...],
    working_dir: str | None,
    excludes: tuple[str, ...],
    resume: bool,
    overwrite: bool,
    follow: bool,
) -> None:
    """Validate the spec in FILE, then run it on a Ray cluster as a Ray job.

    Prints the job id on stdout (messages go to stderr).
    """
    from raylift.ops.jobs import JobsClient, build_submission

    submission = build_submission(
        file,
        list(overrides),
        working_dir=working_dir,
        resume=resume,
        overwrite=overwrite,
        excludes=list(excludes),
    )
    client = JobsClient(address)
    job_id = client.submit(submission)
    err_console.print(
        f"submitted {file} to {client.url} ({submission.package_bytes / 1024:.0f} KiB "
        f"working dir): {submission.entrypoint}",
        highlight=False,
    )
    console.print(job_id, highlight=False)
    if follow:
        _finish(job_id, client.follow(job_id, _write))
    err_console.print(f"follow it: raylift jobs logs {job_id} --follow", highlight=False)


@click.group()
def jobs() -> None:
    """Ray jobs on a cluster: list, status, logs, stop, wait."""


@jobs.command("list")
@_address_option
@handle_errors
def list_command(address: str | None) -> None:
    """Every job the cluster knows, oldest first."""
    from raylift.ops.jobs import JobsClient

    print_jobs(JobsClient(address).list())


@jobs.command("status")
@click.argument("job_id")
@_address_option
@handle_errors
def status_command(job_id: str, address: str | None) -> None:
    """A job's status; exit code 0 succeeded or running, 1 failed, 3 stopped."""
    from raylift.ops.jobs import JobsClient, exit_code

    info = JobsClient(address).info(job_id)
    status = str(info.status.value)
    line = f"{job_id}: {status}"
    if info.message:
        line += f" ({info.message.strip().splitlines()[0]})"
    console.print(line, highlight=False)
    sys.exit(exit_code(status))


@jobs.command("logs")
@click.argument("job_id")
@_address_option
@click.option("--follow", is_flag=True, help="Keep streaming until the job ends.")
@handle_errors
def logs_command(job_id: str, address: str | None, follow: bool) -> None:
    """A job's driver output."""
    from raylift.ops.jobs import JobsClient

    client = JobsClient(address)
    if follow:
        _finish(job_id, client.follow(job_id, _write))
    _write(client.logs(job_id))


@jobs.command("stop")
@click.argument("job_id")
@_address_option
@click.option(
    "--timeout",
    default=120.0,
    show_default=True,
    help="Seconds to wait for the job to end (the run checkpoints first).",
)
@handle_errors
def stop_command(job_id: str, address: str | None, timeout: float) -> None:
    """Stop a job gracefully: its run checkpoints, then the job ends as STOPPED."""
    from raylift.ops.jobs import TERMINAL, JobsClient

    client = JobsClient(address)
    if not client.stop(job_id):
        status = client.status(job_id)
        console.print(f"{job_id} had already ended: {status}", highlight=False)
        return
    err_console.print(f"stopping {job_id} (its run checkpoints first)...", highlight=False)
    status = client.wait(job_id, timeout=timeout)
    if status not in TERMINAL:
        raise JobError(f"{job_id} is still {status} after {timeout:.0f} s")
    console.print(f"{job_id}: {status}", highlight=False)
    for line in client.logs(job_id).splitlines()[-20:]:
        if "stopped at step" in line:
            console.print(line.strip().removeprefix("error: "), highlight=False)


@jobs.command("wait")
@click.argument("job_id")
@_address_option
@click.option("--timeout", default=None, type=float, help="Give up after this many seconds.")
@handle_errors
def wait_command(job_id: str, address: str | None, timeout: float | None) -> None:
    """Block until a job ends; exit 0 succeeded, 1 failed, 3 stopped, 124 timed out."""
    from raylift.ops.jobs import TERMINAL, JobsClient

    status = JobsClient(address).wait(job_id, timeout=timeout)
    if status not in TERMINAL:
        err_console.print(f"job {job_id}: still {status} after {timeout:g} s", highlight=False)
        sys.exit(WAIT_TIMEOUT_EXIT)
    _finish(job_id, status)


def print_jobs(listed: list[Any]) -> None:
    """A table on a terminal; tab-separated lines (with a header) for scripts."""
    header = ("job", "status", "run", "spec", "started_utc", "duration_s")
    rows = []
    for job in listed:
        started = (job.start_time or 0) / 1000
        ended = (job.end_time or 0) / 1000 or time.time()
        metadata = job.metadata or {}
        rows.append(
            (
                job.submission_id or job.job_id or "-",
                str(job.status.value),
                metadata.get("raylift_run", "-"),
                metadata.get("raylift_spec", (job.entrypoint or "-")[:40]),
                datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%S")
                if started
                else "-",
                f"{ended - started:.0f}" if started else "-",
            )
        )
    if not console.is_terminal:
        for row in (header, *rows):
            _write("\t".join(row) + "\n")
        return
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    console.print(table)

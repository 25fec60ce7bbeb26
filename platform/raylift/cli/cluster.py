"""``raylift cluster up|status|down``: a local multi-node Ray cluster for development;
``raylift cluster manifests``: KubeRay manifests for a production cluster."""

from __future__ import annotations

import click
from rich.table import Table

from raylift.cli.common import console, err_console, handle_errors
from raylift.cli.manifests import manifests


def _name_option(func):  # type: ignore[no-untyped-def]
    return click.option(
        "--name", default="dev", show_default=True, help="Which dev cluster (several may run)."
    )(func)


@click.group()
def cluster() -> None:
    """Local dev clusters (up, status, down) and production manifests (manifests)."""


@cluster.command("up")
@_name_option
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0, 64))
@click.option("--cpus-per-worker", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option("--gpus-per-worker", default=0.0, show_default=True, type=click.FloatRange(0))
@click.option(
    "--head-cpus",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="CPUs the head offers to tasks (0: drivers only; training goes to worker nodes).",
)
@click.option("--port", default=6379, show_default=True, help="GCS port (0: any free port).")
@click.option(
    "--dashboard-port",
    default=8265,
    show_default=True,
    help="Dashboard and Jobs API port (0: any).",
)
@click.option(
    "--storage",
    default=None,
    metavar="DIR",
    help="Default storage root for jobs on this cluster ($RAYLIFT_STORAGE_PATH on its nodes).",
)
@handle_errors
def up_command(
    name: str,
    workers: int,
    cpus_per_worker: float,
    gpus_per_worker: float,
    head_cpus: float,
    port: int,
    dashboard_port: int,
    storage: str | None,
) -> None:
    """Start a head and N worker nodes with `ray start`, bound to 127.0.0.1."""
    from raylift.ops.devcluster import up

    err_console.print(f"starting dev cluster {name!r}: a head and {workers} worker node(s)...")
    started = up(
        name,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        head_cpus=head_cpus,
        port=port,
        dashboard_port=dashboard_port,
        storage=storage,
    )
    console.print(f"dev cluster {name!r} is up", highlight=False)
    console.print(f"  jobs API / dashboard: {started.dashboard_url}", highlight=False)
    console.print(f"  GCS address:          {started.gcs_address}", highlight=False)
    token = started.token_path or "$RAY_AUTH_TOKEN"
    console.print(f"  auth token:           {token} (RAY_AUTH_MODE=token)", highlight=False)
    console.print(
        f"  submit a job:  raylift submit jobs/digits-mlp.yaml --address "
        f"{started.dashboard_url} --follow",
        highlight=False,
    )
    console.print(f"  stop it all:   raylift cluster down --name {name}", highlight=False)


@cluster.command("status")
@_name_option
@handle_errors
def status_command(name: str) -> None:
    """Nodes, their resources, and the cluster's jobs."""
    from raylift.errors import ClusterError
    from raylift.ops.devcluster import cluster_processes, load, nodes

    found = load(name)
    if found is None or not cluster_processes(found):
        raise ClusterError(f"dev cluster {name!r} is not running (`raylift cluster up`)")
    console.print(
        f"dev cluster {name!r}: {found.dashboard_url} (GCS {found.gcs_address})", highlight=False
    )
    table = Table("node", "role", "state", "address", "resources")
    for node in nodes(found):
        resources = _resources(node["resources"])
        table.add_row(
            node["node_id"][:12],
            "head" if node["is_head"] else "worker",
            node["state"],
            node["address"],
            resources or "-",
        )
    console.print(table)
    from raylift.cli.jobs import print_jobs
    from raylift.ops.jobs import JobsClient

    print_jobs(JobsClient(found.dashboard_url).list())


def _resources(total: dict[str, float]) -> str:
    """CPU, GPU, memory and custom resources (not Ray's per-node bookkeeping ones)."""
    shown = []
    for key, value in sorted(total.items()):
        if key.startswith("node:") or key in ("object_store_memory", "accelerator_type"):
            continue
        if key == "memory":
            shown.append(f"memory={value / 2**30:.1f}GiB")
        else:
            shown.append(f"{key}={value:g}")
    return ", ".join(shown)


@cluster.command("down")
@_name_option
@handle_errors
def down_command(name: str) -> None:
    """Stop exactly the processes `cluster up` started."""
    from raylift.ops.devcluster import down

    stopped = down(name)
    console.print(f"dev cluster {name!r} is down ({len(stopped)} processes stopped)")


cluster.add_command(manifests)

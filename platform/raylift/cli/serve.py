"""``raylift serve FILE``, ``raylift serve status`` and ``raylift serve down NAME``."""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import click
import yaml

from raylift.cli.common import State, address_option, console, handle_errors, set_option
from raylift.errors import UsageError
from raylift.specs.serve import ServeSpec, load_serve_spec

STATUS_POLL_S = 2.0


class ServeGroup(click.Group):
    """``serve FILE ...`` deploys; ``serve status`` / ``serve down NAME`` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["up", *args]
        return super().parse_args(ctx, args)


@click.group(cls=ServeGroup)
def serve() -> None:
    """Serve trained models: `raylift serve FILE`, `serve status`, `serve down NAME`."""


@serve.command("up", hidden=True)
@click.argument("file", type=click.Path(dir_okay=False))
@address_option
@set_option
@click.option("--detach", is_flag=True, help="Deploy and return; the application keeps running.")
@click.option(
    "--emit-config",
    "emit_config",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="OUT",
    help="Write a Ray Serve config file (for `serve deploy` / KubeRay RayService) and exit.",
)
@click.option("--dry-run", is_flag=True, help="Check the spec and the exports, then exit.")
@handle_errors
def up(
    file: str,
    address: str | None,
    overrides: tuple[str, ...],
    detach: bool,
    emit_config: str | None,
    dry_run: bool,
) -> None:
    """Deploy the models in FILE (foreground; Ctrl-C removes only this application)."""
    from raylift.ops.connect import connect, resolve_address
    from raylift.serving.deploy import deploy, preflight, start_serve
    from raylift.serving.haproxy import enabled as haproxy_enabled
    from raylift.serving.haproxy import use_for_embedded_ray

    spec = load_serve_spec(file, list(overrides))
    if detach and resolve_address(address) is None:
        raise UsageError(
            "needs a running cluster to leave the application on: give --address "
            "(or set RAY_ADDRESS; `raylift cluster up` starts a local one)",
            option="--detach",
        )
    checks = preflight(spec, file)
    for model, gate in checks.gates.items():
        console.print(
            f"{model}: int8 accuracy {gate.int8_accuracy:.2%} vs {gate.plain_accuracy:.2%} "
            f"(drop {gate.drop_pts:.2f} pts), {gate.plain_bytes / gate.int8_bytes:.1f}x smaller",
            highlight=False,
        )
    if emit_config:
        _emit(spec, emit_config)
        return
    if dry_run:
        console.print(f"{file}: ok (application {spec.name!r})", highlight=False)
        return
    embedded = resolve_address(address) is None
    if embedded and spec.proxy == "haproxy":
        use_for_embedded_ray()
    where = connect(address, verbose=State.verbose)
    if embedded:
        where += " (HAProxy ingress)" if haproxy_enabled() else " (Serve's Python proxy)"
    start_serve(spec)
    console.print(f"{spec.name}: deploying on {where}", highlight=False)
    seconds = deploy(spec)
    console.print(f"{spec.name}: running after {seconds:.1f} s", highlight=False)
    _print_urls(spec)
    if detach:
        console.print(f"left running; stop it with: raylift serve down {spec.name}")
        return
    _watch(spec)


@serve.command("status")
@address_option
@handle_errors
def status(address: str | None) -> None:
    """Show the Serve applications on the cluster and their replicas."""
    from raylift.serving.deploy import applications, describe

    _connect_existing(address)
    apps = applications()
    if not apps:
        console.print("no Serve applications running")
        return
    for name, app in sorted(apps.items()):
        console.print(describe(name, app), highlight=False)


@serve.command("down")
@click.argument("name")
@address_option
@handle_errors
def down(name: str, address: str | None) -> None:
    """Remove the application NAME (other applications keep running)."""
    from raylift.serving.deploy import remove

    _connect_existing(address)
    remove(name)
    console.print(f"{name}: removed", highlight=False)


def _connect_existing(address: str | None) -> None:
    from raylift.ops.connect import connect, resolve_address

    connect(resolve_address(address) or "auto", verbose=State.verbose)


def _emit(spec: ServeSpec, out: str) -> None:
    from raylift.serving.app import serve_config

    config = serve_config(spec)
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(
            f"# Ray Serve config for raylift application {spec.name!r}, written by\n"
            "# `raylift serve --emit-config`; deploy it with `serve deploy FILE` or put\n"
            "# `applications` under a RayService's serveConfigV2.\n"
        )
        yaml.safe_dump(config, handle, sort_keys=False)
    console.print(f"wrote {out} (validated with ray.serve.schema.ServeDeploySchema)")


def _print_urls(spec: ServeSpec) -> None:
    prefix = "" if spec.route_prefix == "/" else spec.route_prefix
    base = f"http://{spec.host}:{spec.port}{prefix}"
    for entry in spec.models:
        console.print(
            f"  {entry.name} v{entry.version}: POST {base}/v2/models/{entry.name}"
            f"/versions/{entry.version}/infer",
            highlight=False,
        )
    console.print(f"  health: {base}/v2/health/ready · OpenAI: {base}/v1/completions")


def _watch(spec: ServeSpec) -> None:
    """Print the application's status when it changes, until Ctrl-C or SIGTERM."""
    from raylift.serving.deploy import applications, describe

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then
    # never raises KeyboardInterrupt for it.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last = ""
    try:
        while True:
            app = applications().get(spec.name)
            if app is None:
                console.print(f"{spec.name}: removed by someone else; exiting")
                return
            line = describe(spec.name, app)
            if line != last:
                console.print(line, highlight=False)
                last = line
            time.sleep(STATUS_POLL_S)
    except KeyboardInterrupt:
        from ray import serve

        console.print(f"{spec.name}: shutting down (other applications keep running)")
        serve.delete(spec.name)
        console.print(f"{spec.name}: removed")
        sys.exit(0)

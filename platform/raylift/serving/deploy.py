"""Deploy, inspect and remove raylift's Serve applications (what ``raylift serve`` runs).

``preflight`` checks everything that can be checked before Ray is touched:
every model path holds a complete export, the API keys can be read, and an
int8 model passes its accuracy gate. A failure names the spec file and key and
starts nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from raylift.errors import ExportError, ServeError, SpecError, UnknownApplication
from raylift.specs.serve import ServeSpec


@dataclass
class Preflight:
    """What the checks found: per model, the int8 gate's numbers when quantized."""

    gates: dict[str, Any] = field(default_factory=dict)


def preflight(spec: ServeSpec, file: str | None = None) -> Preflight:
    from raylift import storage
    from raylift.artifacts.export import read_manifest
    from raylift.models.exported import load_export
    from raylift.serving.keys import read_api_keys

    try:
        read_api_keys(spec.auth)
    except SpecError as exc:
        raise exc.with_file(file or "<spec>") from None
    found = Preflight()
    for index, entry in enumerate(spec.models):
        key = f"models.{index}.model.path"
        path = spec.model_path(entry)
        if storage.is_remote(path):
            continue  # read by the replicas, where the credentials are
        local = storage.local_path(path)
        try:
            read_manifest(local)
        except ExportError as exc:
            raise SpecError(
                f"{path}: no usable export ({exc}); train it first (e.g. raylift train "
                "jobs/<job>.yaml) or point model.path at an export folder",
                file=file,
                key=key,
            ) from None
        if entry.quantize == "int8":
            from raylift.serving.quantize import check_int8

            _, result = check_int8(
                load_export(local), entry.max_accuracy_drop_pts, model_name=entry.name
            )
            found.gates[f"{entry.name}:{entry.version}"] = result
    return found


def start_serve(spec: ServeSpec) -> None:
    """Start Serve's proxy on the spec's host and port (no-op if Serve already runs)."""
    from ray import serve

    serve.start(http_options={"host": spec.host, "port": spec.port})


def deploy(spec: ServeSpec) -> float:
    """Deploy (or update) the spec's application; seconds until it was running."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    from raylift.serving.app import build

    started = time.perf_counter()
    try:
        serve.run(build(spec), name=spec.name, route_prefix=spec.route_prefix, blocking=False)
    except (RuntimeError, RayServeException) as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[-1] if lines else type(exc).__name__
        if "Prefix" in reason and "is being used" in reason:
            reason += f" Give this one its own: --set route_prefix=/{spec.name}"
        raise ServeError(f"application {spec.name!r} failed to deploy: {reason}") from None
    return time.perf_counter() - started


def applications() -> dict[str, Any]:
    """Serve's applications on the connected cluster ({} when Serve is not running)."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        return dict(serve.status().applications)
    except RayServeException:
        return {}


def remove(name: str) -> None:
    """Delete one application; the others (and Serve itself) keep running."""
    from ray import serve

    apps = applications()
    if name not in apps:
        raise UnknownApplication(
            f"no Serve application {name!r} on this cluster; running: {sorted(apps) or 'none'}"
        )
    serve.delete(name)


def describe(name: str, app: Any) -> str:
    """One line: the application's status and each deployment's replicas."""
    parts = [f"{name}: {_value(app.status)}"]
    for deployment, overview in sorted(app.deployments.items()):
        states = {_value(k): v for k, v in (overview.replica_states or {}).items()}
        running = states.get("RUNNING", 0)
        total = sum(states.values())
        parts.append(f"{deployment} {running}/{total} running ({_value(overview.status)})")
    if getattr(app, "message", ""):
        parts.append(app.message.strip().splitlines()[-1][:200])
    return " · ".join(parts)


def _value(status: Any) -> str:
    return str(getattr(status, "value", status))

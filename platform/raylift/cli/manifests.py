"""``raylift cluster manifests``: KubeRay manifests for an image, GPU count and storage URI.

Checks the job, sweep and serve specs the manifests name (no Ray is started), renders
the Serve config exactly as ``raylift serve FILE --emit-config`` does, and writes one
YAML file per kind (see :mod:`raylift.ops.manifests`).
"""

from __future__ import annotations

import os
import shlex
from typing import Any

import click
import yaml

from raylift.cli.common import console, err_console, handle_errors
from raylift.errors import UsageError
from raylift.ops.manifests import (
    API_KEYS_ENV,
    ManifestOptions,
    check,
    dump,
    render,
    sweep_overrides,
    train_overrides,
)
from raylift.version import __version__

DEFAULT_RULES = "cluster/prometheus/rules/raylift-alerts.yml"


@click.command("manifests")
@click.option(
    "--storage",
    required=True,
    metavar="URI",
    help="Runs and checkpoints, reachable from every pod: s3://BUCKET/PREFIX, "
    "gs://BUCKET/PREFIX, or a path on the volume --storage-claim.",
)
@click.option(
    "--image",
    default=None,
    help="The raylift image (cluster/docker/Dockerfile) where the cluster pulls from "
    "[default: raylift:VERSION-gpu, or -cpu with --gpus-per-worker 0].",
)
@click.option(
    "--gpus-per-worker",
    default=1,
    show_default=True,
    type=int,
    help="GPUs per GPU worker pod (0: CPU only; training then runs on the CPU workers).",
)
@click.option(
    "--gpu-workers", default="1:2", show_default=True, metavar="MIN:MAX", help="On-demand GPU pods."
)
@click.option(
    "--spot-gpu-workers",
    default="0:2",
    show_default=True,
    metavar="MIN:MAX",
    help="Spot GPU pods on top of the on-demand ones (0:0 for none).",
)
@click.option("--cpu-workers", default="0:2", show_default=True, metavar="MIN:MAX")
@click.option("--head-resources", default="2,8Gi", show_default=True, metavar="CPUS,MEMORY")
@click.option("--cpu-worker-resources", default="4,16Gi", show_default=True, metavar="CPUS,MEMORY")
@click.option("--gpu-worker-resources", default="8,32Gi", show_default=True, metavar="CPUS,MEMORY")
@click.option("--name", default="raylift", show_default=True, help="RayCluster name and prefix.")
@click.option(
    "--cloud",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "aws", "gcp", "none"]),
    help="Spot node labels and tolerations (auto: from the storage URI).",
)
@click.option(
    "--spot-label",
    default=None,
    metavar="KEY=VALUE",
    help="The node label of spot nodes (default: EKS's or GKE's).",
)
@click.option(
    "--service-account-annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="e.g. eks.amazonaws.com/role-arn=ARN or iam.gke.io/gcp-service-account=SA.",
)
@click.option(
    "--storage-claim",
    default=None,
    metavar="PVC",
    help="A PersistentVolumeClaim mounted at --storage (a path) in every pod.",
)
@click.option(
    "--token-secret",
    default="raylift-ray-token",
    show_default=True,
    help="Secret with the Ray token under key auth_token.",
)
@click.option(
    "--api-keys-secret",
    default="raylift-api-keys",
    show_default=True,
    help="Secret with the serving API keys under key keys ('' for none).",
)
@click.option("--train-spec", default="jobs/digits-mlp.yaml", show_default=True)
@click.option(
    "--sweep-spec",
    default="jobs/sweeps/digits-asha.yaml",
    show_default=True,
    help="'' for no sweep RayJob.",
)
@click.option(
    "--serve-spec", default="serve/digits.yaml", show_default=True, help="'' for no RayService."
)
@click.option(
    "--serve-set",
    multiple=True,
    metavar="KEY=VALUE",
    help="Overrides for the serve spec (repeatable).",
)
@click.option(
    "--alert-rules",
    default=DEFAULT_RULES,
    show_default=True,
    help="Prometheus rule file to ship as a PrometheusRule ('' for none).",
)
@click.option(
    "--monitor-label",
    "monitor_labels",
    multiple=True,
    default=("release=prometheus",),
    show_default=True,
    metavar="KEY=VALUE",
    help="Labels the Prometheus operator selects PodMonitors and rules by.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Write one file per kind into this folder (default: all to stdout).",
)
@handle_errors
def manifests(**params: Any) -> None:
    """Render KubeRay manifests: RayCluster, RayJobs (train, sweep), RayService, monitoring."""
    options = _options(params)
    check(options)
    _check_jobs(options)
    if params["serve_spec"]:
        options = _with_serve_config(options, params["serve_spec"], params["serve_set"])
    rules = _alert_groups(params["alert_rules"])
    if rules is not None:
        options = _replace(options, alert_groups=rules)
    files = render(options)
    header = (
        f"Rendered by `raylift cluster manifests{_command_line()}` (raylift {__version__}).\n"
        "Change the options and render again rather than editing this file."
    )
    if params["out"] is None:
        docs = [doc for documents in files.values() for doc in documents]
        click.echo(dump(docs, header), nl=False)  # raw YAML: no console markup or wrapping
        return
    os.makedirs(params["out"], exist_ok=True)
    for name, documents in files.items():
        path = os.path.join(params["out"], name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(dump(documents, header))
        console.print(f"wrote {path}", highlight=False)


def _options(params: dict[str, Any]) -> ManifestOptions:
    gpus = params["gpus_per_worker"]
    head = _resources("--head-resources", params["head_resources"])
    cpu = _resources("--cpu-worker-resources", params["cpu_worker_resources"])
    gpu = _resources("--gpu-worker-resources", params["gpu_worker_resources"])
    return ManifestOptions(
        storage=params["storage"],
        image=params["image"] or f"raylift:{__version__}-{'gpu' if gpus else 'cpu'}",
        name=params["name"],
        gpus_per_worker=gpus,
        gpu_workers=_bounds("--gpu-workers", params["gpu_workers"]),
        spot_gpu_workers=_bounds("--spot-gpu-workers", params["spot_gpu_workers"]),
        cpu_workers=_bounds("--cpu-workers", params["cpu_workers"]),
        head_cpus=head[0],
        head_memory=head[1],
        cpu_worker_cpus=cpu[0],
        cpu_worker_memory=cpu[1],
        gpu_worker_cpus=gpu[0],
        gpu_worker_memory=gpu[1],
        cloud=params["cloud"],
        spot_label=_pair("--spot-label", params["spot_label"]) if params["spot_label"] else None,
        service_account_annotations=tuple(
            _pair("--service-account-annotation", item) for item in params["annotations"]
        ),
        storage_claim=params["storage_claim"],
        token_secret=params["token_secret"],
        api_keys_secret=params["api_keys_secret"] or None,
        train_spec=params["train_spec"],
        sweep_spec=params["sweep_spec"] or None,
        monitor_labels=tuple(_pair("--monitor-label", item) for item in params["monitor_labels"]),
    )


def _check_jobs(options: ManifestOptions) -> None:
    """The specs the RayJobs run exist here (the image has the same jobs/) and validate."""
    from raylift.specs import check_data_files, load_spec

    spec = load_spec(options.train_spec, train_overrides(options))
    check_data_files(spec, file=options.train_spec)
    if options.sweep_spec:
        from raylift.tuning.sweep import load_sweep

        load_sweep(options.sweep_spec, sweep_overrides(options))


def _with_serve_config(options: ManifestOptions, file: str, extra: tuple[str, ...]) -> Any:
    """What ``raylift serve FILE --emit-config`` writes, for the pods' host, port and storage."""
    from raylift.serving.app import serve_config
    from raylift.specs.serve import load_serve_spec

    overrides = [f"storage.path={options.storage}", "host=0.0.0.0", "port=8000"]
    if options.api_keys_secret:
        overrides.append(f"auth.api_keys_env={API_KEYS_ENV}")
    spec = load_serve_spec(file, [*overrides, *extra])
    return _replace(options, serve_config=serve_config(spec))


def _alert_groups(path: str) -> list[dict[str, Any]] | None:
    if not path:
        return None
    if not os.path.isfile(path):
        if path == DEFAULT_RULES:
            err_console.print(f"note: no {path} here; the PrometheusRule is left out")
            return None
        raise UsageError(f"{path!r} does not exist", option="--alert-rules")
    with open(path, encoding="utf-8") as handle:
        groups = (yaml.safe_load(handle) or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        raise UsageError(f"{path!r} has no rule groups", option="--alert-rules")
    return groups


def _bounds(option: str, text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise UsageError(f"{text!r}: write MIN:MAX, e.g. 1:4", option=option)
    return int(low), int(high)


def _resources(option: str, text: str) -> tuple[int, str]:
    cpus, sep, memory = text.partition(",")
    if not sep or not cpus.strip().isdigit():
        raise UsageError(f"{text!r}: write CPUS,MEMORY, e.g. 8,32Gi", option=option)
    return int(cpus), memory.strip()


def _pair(option: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"{text!r}: write KEY=VALUE", option=option)
    return key.strip(), value.strip()


def _replace(options: ManifestOptions, **changes: Any) -> ManifestOptions:
    from dataclasses import replace

    return replace(options, **changes)


def _command_line() -> str:
    """The options that differ from their defaults, in a stable order (for file headers)."""
    ctx = click.get_current_context()
    parts: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in (None, "out"):
            continue
        value = ctx.params.get(param.name)
        default = param.get_default(ctx, call=True)
        if param.multiple:
            value = tuple(value or ())
            default = tuple(default) if isinstance(default, list | tuple) else ()
        if value == default or value is None:
            continue
        for item in value if param.multiple else (value,):
            parts += [param.opts[0], shlex.quote(str(item))]
    return "".join(f" {part}" for part in parts)

"""A deployment spec -> a Ray Serve application (and the config file ``serve deploy`` takes).

The application is an ingress deployment (``ingress.py``, FastAPI) in front
of one ``ModelServer`` deployment per spec entry, named ``<name>-v<version>``,
each with its own replicas (fixed or autoscaling), resources, batching and
``max_ongoing_requests``. A spec with one model is one deployment (named after
the model) whose replicas serve HTTP and run the model. ``build_app`` is also
the ``import_path`` of the config that ``raylift serve FILE --emit-config`` writes, so Ray's ``serve
deploy`` and KubeRay's RayService build exactly the same application.
"""

from __future__ import annotations

from typing import Any

from raylift.specs.serve import Autoscaling, ServedModel, ServeSpec

IMPORT_PATH = "raylift.serving.app:build_app"
INGRESS_NAME = "ingress"
INGRESS_CPUS = 0.25  # parsing and routing only; the models hold the CPUs they ask for


def deployment_name(entry: ServedModel) -> str:
    return f"{entry.name}-v{entry.version}"


def deployment_options(entry: ServedModel, spec: ServeSpec) -> dict[str, Any]:
    """Serve deployment options for one spec entry (the same in code and in the config)."""
    options: dict[str, Any] = {
        "name": deployment_name(entry),
        "max_ongoing_requests": entry.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": entry.resources.cpus, "num_gpus": entry.resources.gpus},
        "logging_config": logging_config(spec),
    }
    if isinstance(entry.replicas, Autoscaling):
        options["autoscaling_config"] = autoscaling_config(entry.replicas)
    else:
        options["num_replicas"] = entry.replicas
    return options


def autoscaling_config(scaling: Autoscaling) -> dict[str, Any]:
    return {
        "min_replicas": scaling.min,
        "initial_replicas": max(scaling.min, 1),
        "max_replicas": scaling.max,
        "target_ongoing_requests": scaling.target_ongoing_requests,
        "upscale_delay_s": scaling.upscale_delay_s,
        "downscale_delay_s": scaling.downscale_delay_s,
        # Decide on recent load: Ray's defaults (10 s / 30 s) react in tens of seconds.
        "metrics_interval_s": 2.0,
        "look_back_period_s": 10.0,
    }


def logging_config(spec: ServeSpec) -> dict[str, Any]:
    return {"enable_access_log": spec.access_log}


def ingress_options(spec: ServeSpec) -> dict[str, Any]:
    most = sum(
        e.max_ongoing_requests
        * (e.replicas.max if isinstance(e.replicas, Autoscaling) else e.replicas)
        for e in spec.models
    )
    return {
        "name": INGRESS_NAME,
        "num_replicas": 1,
        "max_ongoing_requests": max(100, most),
        "ray_actor_options": {"num_cpus": INGRESS_CPUS},
        "logging_config": logging_config(spec),
    }


def build(spec: ServeSpec) -> Any:
    """The Serve application for ``spec`` (model paths resolved against its storage).

    One model: a single deployment, named after the model, whose replicas are the
    HTTP ingress and the model at once (no second hop). Several: an ingress
    deployment in front of one deployment per model.
    """
    from ray import serve

    from raylift.serving.ingress import IngressServer
    from raylift.serving.model_server import ModelServer

    ingress = serve.deployment(IngressServer)
    if len(spec.models) == 1:
        return ingress.options(**deployment_options(spec.models[0], spec)).bind(
            spec.model_dump(mode="json"), None
        )
    model_deployment = serve.deployment(ModelServer)
    bound = [
        model_deployment.options(**deployment_options(entry, spec)).bind(
            entry.model_dump(mode="json"), spec.model_path(entry)
        )
        for entry in spec.models
    ]
    return ingress.options(**ingress_options(spec)).bind(spec.model_dump(mode="json"), bound)


def build_app(args: dict[str, Any]) -> Any:
    """Application builder for ``serve deploy`` / RayService: ``args = {"spec": {...}}``."""
    from raylift.specs.loader import validate

    raw = args.get("spec") if isinstance(args, dict) else None
    if not isinstance(raw, dict):
        raise ValueError("args must be {'spec': <a raylift deployment spec as a mapping>}")
    return build(validate(ServeSpec, raw, file="<serve config args>"))


def serve_config(spec: ServeSpec) -> dict[str, Any]:
    """A Ray Serve config (``ServeDeploySchema``) that deploys the same application."""
    from ray.serve.schema import ServeDeploySchema

    resolved = spec.model_dump(mode="json")
    for raw, entry in zip(resolved["models"], spec.models, strict=True):
        raw["model"]["path"] = spec.model_path(entry)  # absolute: the builder runs elsewhere
    if len(spec.models) == 1:
        deployments = [_config_deployment(deployment_options(spec.models[0], spec))]
    else:
        deployments = [_config_deployment(ingress_options(spec))]
        deployments += [_config_deployment(deployment_options(e, spec)) for e in spec.models]
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": spec.host, "port": spec.port},
        "applications": [
            {
                "name": spec.name,
                "route_prefix": spec.route_prefix,
                "import_path": IMPORT_PATH,
                "args": {"spec": resolved},
                "deployments": deployments,
            }
        ],
    }
    ServeDeploySchema.model_validate(config)
    return config


def _config_deployment(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}

"""The Serve application: deployment options and the Serve config, from the spec (no Ray)."""

from __future__ import annotations

from raylift.serving.app import deployment_options, serve_config
from raylift.specs.serve import ServeSpec


def _spec(**models: object) -> ServeSpec:
    return ServeSpec.model_validate(
        {
            "name": "app",
            "storage": {"path": "/srv/runs"},
            "models": [
                {"name": "a", "model": {"path": "run-a"}, "replicas": 3, **models},
                {
                    "name": "a",
                    "version": "2",
                    "model": {"path": "/exports/a2"},
                    "replicas": {"min": 0, "max": 4},
                    "resources": {"cpus": 2, "gpus": 0.5},
                },
            ],
        }
    )


def test_deployment_options_and_the_serve_config_match_the_spec() -> None:
    spec = _spec()
    fixed, scaled = (deployment_options(e, spec) for e in spec.models)
    assert fixed["logging_config"] == {"enable_access_log": True}
    assert fixed["name"] == "a-v1" and fixed["num_replicas"] == 3
    assert scaled["autoscaling_config"]["min_replicas"] == 0
    assert scaled["autoscaling_config"]["initial_replicas"] == 1
    assert scaled["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    config = serve_config(spec)
    app = config["applications"][0]
    assert app["import_path"] == "raylift.serving.app:build_app"
    paths = [m["model"]["path"] for m in app["args"]["spec"]["models"]]
    assert paths == ["/srv/runs/run-a/model", "/exports/a2"]  # resolved for the cluster
    assert [d["name"] for d in app["deployments"]] == ["ingress", "a-v1", "a-v2"]
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8000}

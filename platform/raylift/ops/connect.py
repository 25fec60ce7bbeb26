"""Connect to Ray: an embedded local Ray, or a cluster given by address."""

from __future__ import annotations

import logging
import os

from raylift.errors import ClusterError

# Train's controller polls workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by
# default) and each worker's report queue holds one result, so a faster poll keeps
# frequent reports from blocking training. Env vars both for the local raylet
# (inherited) and for a remote job (runtime_env).
# Ray's preemption watcher polls for node drains every
# RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S (5 s by default). (The worker-group start
# timeout is set per run: see training/trainer.py.)
WORKER_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S": "1",
}

# How fast the GCS declares a silent node dead: after health_check_failure_threshold
# missed checks, health_check_period_ms apart. Ray's defaults (3 s x 5) notice a
# hard-killed node (power loss, SIGKILL of its raylet) only after ~15-25 s; this
# notices it in ~3-5 s. For the Ray clusters raylift starts itself (its tests,
# benchmarks, and the dev cluster): ``ray.init(_system_config=...)`` or
# ``ray start --system-config``. A too-eager setting marks nodes dead during long
# network hiccups, so production clusters should weigh it against their network.
NODE_HEALTH_CHECK = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}


def resolve_address(address: str | None) -> str | None:
    """``--address`` wins, then ``RAY_ADDRESS``; None means an embedded local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    dashboard: bool = True,
    verbose: bool = False,
) -> str:
    """``ray.init`` once; returns a description of what it connected to.

    An embedded Ray binds 127.0.0.1 and has token authentication on
    (``RAY_AUTH_MODE=token``; the token goes to ``~/.ray/auth_token``).
    """
    address = resolve_address(address)
    env = {k: os.environ.get(k, v) for k, v in WORKER_ENV_DEFAULTS.items()}
    # Train copies the RAY_TRAIN_* variables from the driver's environment into
    # its controller and workers when a run starts.
    for key, value in env.items():
        os.environ.setdefault(key, value)
    if address is None:
        # Ray reads this when it is first imported: set it before that.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return "existing Ray"
    level = logging.INFO if verbose else logging.ERROR
    try:
        if address is None:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=dashboard,
                dashboard_host="127.0.0.1",
                logging_level=level,
                log_to_driver=verbose,
                configure_logging=True,
            )
            return "embedded local Ray"
        ray.init(
            address=address,
            logging_level=level,
            log_to_driver=verbose,
            runtime_env={"env_vars": env},
        )
        return f"Ray cluster at {address}"
    except ConnectionError as exc:
        raise ClusterError(f"cannot connect to Ray at {address}: {exc}") from None
    except Exception as exc:
        if "auth" in str(exc).lower() or "token" in str(exc).lower():
            raise ClusterError(
                f"Ray refused the connection ({exc}); set RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
            ) from None
        raise


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()

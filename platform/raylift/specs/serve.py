"""The deployment spec (``kind: serve``): which exported models to serve, and how.

One spec is one Ray Serve application: one or more models (or versions of one),
each a deployment with its own replicas, resources, batching and quantization,
behind one HTTP ingress on ``host:port`` under ``route_prefix``. ``model.path``
is an export folder or a run name under ``storage.path`` (its ``model/``), so a
spec can name what ``raylift train`` or ``raylift tune`` produced without
editing. API keys never appear in the spec: it names an environment variable or
a file that holds them.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from raylift.specs.base import StrictModel
from raylift.specs.job import RUN_NAME_PATTERN, KeyedError, StorageSpec, resolve_model_ref

# A model name or version appears in URLs (/v2/models/{name}/versions/{version}).
URL_SEGMENT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class ModelRef(StrictModel):
    path: str = Field(
        description="An exported model folder, or a run or sweep name under storage.path "
        "(a run's <run>/model, else a sweep's <sweep>/best/model)."
    )


class Autoscaling(StrictModel):
    """Ray Serve's autoscaling_config, in raylift's words."""

    min: int = Field(1, ge=0, description="Replicas kept when idle (0 scales to zero).")
    max: int = Field(2, ge=1, description="Replicas at most.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in flight per replica that autoscaling aims for."
    )
    upscale_delay_s: float = Field(5.0, ge=0, description="Load must last this long to add.")
    downscale_delay_s: float = Field(30.0, ge=0, description="Idle this long to remove.")

    @model_validator(mode="after")
    def _range(self) -> Autoscaling:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class Resources(StrictModel):
    cpus: float = Field(1.0, ge=0, description="CPUs per replica.")
    gpus: float = Field(0.0, ge=0, description="GPUs per replica (fractions share one).")


class Batching(StrictModel):
    """``@serve.batch``: requests that arrive together run as one batch."""

    enabled: bool = Field(True, description="Batch concurrent requests (@serve.batch).")
    max_batch_size: int = Field(32, ge=1, le=4096, description="Rows per model call at most.")
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, le=10, description="How long the first request waits for company."
    )


class Limits(StrictModel):
    """Requests beyond these get a 4xx, never a 500."""

    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body.")
    max_rows: int = Field(1024, ge=1, description="Inputs in one infer request.")
    max_tokens: int = Field(256, ge=1, description="gpt: tokens one completion may ask for.")


class ServedModel(StrictModel):
    name: str = Field(pattern=URL_SEGMENT, description="Model name in the URLs.")
    version: str = Field("1", pattern=URL_SEGMENT, description="Version in the URLs.")
    model: ModelRef = Field(description="The export to serve.")
    quantize: Literal["none", "int8"] = Field(
        "none", description="int8: Linear layers quantized at load (see max_accuracy_drop_pts)."
    )
    max_accuracy_drop_pts: float = Field(
        0.5,
        ge=0,
        le=100,
        description="int8 gate: refuse to deploy when accuracy on the export's held-out "
        "sample drops by more than this many points.",
    )
    replicas: int | Autoscaling = Field(
        1, description="A fixed number of replicas, or {min, max, target_ongoing_requests...}."
    )
    resources: Resources = Field(
        default_factory=Resources, description="CPUs and GPUs per replica."
    )
    batching: Batching = Field(
        default_factory=Batching, description="Requests that arrive together run as one batch."
    )
    max_ongoing_requests: int = Field(64, ge=1, description="Per replica, queued or running.")
    limits: Limits = Field(
        default_factory=Limits, description="Request size limits (larger: a 4xx error)."
    )

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas(cls, value: Any) -> int | Autoscaling:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError("a fixed number of replicas must be >= 1")
            return value
        if isinstance(value, dict):
            try:
                return Autoscaling.model_validate(value)
            except ValidationError as exc:
                raise KeyedError("bad replicas", [], inner=exc) from None
        if isinstance(value, Autoscaling):
            return value
        raise ValueError(
            "give a number of replicas, or {min, max, target_ongoing_requests, "
            "upscale_delay_s, downscale_delay_s} to autoscale"
        )


class Auth(StrictModel):
    """Where the API keys are; never the keys themselves."""

    api_keys_env: str | None = Field(
        None, description="Environment variable holding comma-separated keys."
    )
    api_keys_file: str | None = Field(None, description="File with one key per line.")

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys_env or self.api_keys_file)


class ServeSpec(StrictModel):
    kind: Literal["serve"] = Field("serve", description="Spec kind; 'serve' for a deployment.")
    name: str = Field(pattern=RUN_NAME_PATTERN, description="Serve application name.")
    description: str | None = Field(None, description="Free text for humans.")
    host: str = Field("127.0.0.1", description="Address the HTTP proxy binds.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the ingress.")
    route_prefix: str = Field("/", description="The application's URL prefix.")
    proxy: Literal["haproxy", "ray"] = Field(
        "haproxy",
        description="HTTP ingress of the Ray that `raylift serve` starts itself: HAProxy "
        "(faster, see benchmarks/serve.py) or Serve's Python proxy. A running cluster "
        "(--address) keeps the proxy it was started with.",
    )
    access_log: bool = Field(
        True,
        description="Serve's per-request log lines in the replicas' log files "
        "(false saves CPU per request; the request metrics count every request either way).",
    )
    auth: Auth = Field(
        default_factory=Auth, description="API keys (from an environment variable or a file)."
    )
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Where run names live.")
    models: list[ServedModel] = Field(min_length=1, description="One deployment per entry.")

    @field_validator("route_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/") or (len(value) > 1 and value.endswith("/")):
            raise ValueError("route_prefix must start with '/' and not end with one")
        return value

    @model_validator(mode="after")
    def _unique(self) -> ServeSpec:
        seen: set[tuple[str, str]] = set()
        for entry in self.models:
            key = (entry.name, entry.version)
            if key in seen:
                raise ValueError(
                    f"model {entry.name!r} version {entry.version!r} is listed twice; "
                    "give each entry its own name or version"
                )
            seen.add(key)
        return self

    def model_path(self, entry: ServedModel) -> str:
        """The export folder of ``entry``: a bare name is a run's ``<storage>/<run>/model``,
        or, when that is absent and the sweep's is present, ``<storage>/<sweep>/best/model``."""
        ref = entry.model.path
        resolved = resolve_model_ref(ref, self.storage.path) or ref
        run_root = self.storage.path.rstrip("/") + "/" + ref
        if resolved == run_root + "/model" and self.storage.is_local:
            best = run_root + "/best/model"
            if not os.path.isdir(resolved) and os.path.isdir(best):
                return best
        return resolved


def load_serve_spec(file: str, overrides: list[str] | None = None) -> ServeSpec:
    """Load and validate a deployment spec; ``overrides`` are ``--set`` strings."""
    from raylift.specs.loader import load_model_file

    return load_model_file(ServeSpec, file, overrides)

"""Ray's internal key-value store (in the GCS): put, exists, delete, by namespace.

Needs a connected Ray (``ray.init``, or inside a task or actor).
"""

from __future__ import annotations

from raylift.ray_compat.requirements import Requirement

KV = "ray.experimental.internal_kv"
REQUIRES = [
    Requirement(KV, "_internal_kv_put", uses=("overwrite", "namespace")),
    Requirement(KV, "_internal_kv_exists", uses=("namespace",)),
    Requirement(KV, "_internal_kv_del", uses=("namespace",)),
]


def put(key: str, value: bytes, *, namespace: str) -> None:
    """Set ``key`` to ``value`` (overwriting)."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(key, value, overwrite=True, namespace=namespace)


def exists(key: str, *, namespace: str) -> bool:
    from ray.experimental.internal_kv import _internal_kv_exists

    return bool(_internal_kv_exists(key, namespace=namespace))


def delete(key: str, *, namespace: str) -> None:
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(key, namespace=namespace)

"""Pure builders: (resource, resolved inputs) -> child manifests as plain dicts."""

from .batch import BatchChildren, BatchInputs, build, shape, with_suspend
from .common import Owner, Storage, scheduling, source_location, stable_hash, to_location

__all__ = [
    "BatchChildren",
    "BatchInputs",
    "Owner",
    "Storage",
    "build",
    "scheduling",
    "shape",
    "source_location",
    "stable_hash",
    "to_location",
    "with_suspend",
]

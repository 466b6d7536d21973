"""The labels and annotations the operator puts on the children it creates, defined once.

The builders write them, the status readers and the reconcilers read them; both import them
from here (the bottom layer), so neither has to import the other.
"""

from __future__ import annotations

from typing import Final

MANAGED_BY: Final = "internlm-operator"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
RESOURCE_LABEL: Final = "internlm.io/resource"
"""The name of the resource (TrainJob, ModelServe, ...) that owns the child."""
KIND_LABEL: Final = "internlm.io/kind"
"""The kind of the resource that owns the child."""
ATTEMPT_LABEL: Final = "internlm.io/attempt"
"""A batch Job's attempt (gang restarts so far) when it was created."""
SPEC_HASH_ANNOTATION: Final = "internlm.io/spec-hash"
"""A hash of what a child was built from: a change means the child must be replaced or rolled."""
APPLIED_HASH_ANNOTATION: Final = "internlm.io/applied-hash"
"""A hash of the whole manifest the operator last applied: equal to the desired one, the pass
applies nothing (steady state writes nothing)."""

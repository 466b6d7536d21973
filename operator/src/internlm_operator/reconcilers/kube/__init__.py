"""The only code that talks to the API server: server-side apply, deletes, reads, events."""

from .client import FIELD_MANAGER, Kube, KubeError, NotFound, kind_of, load_api_client
from .events import record as record_event

__all__ = [
    "FIELD_MANAGER",
    "Kube",
    "KubeError",
    "NotFound",
    "kind_of",
    "load_api_client",
    "record_event",
]

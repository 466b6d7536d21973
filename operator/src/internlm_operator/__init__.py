"""internlm-operator: the InternLM toolchain as Kubernetes custom resources."""

__version__ = "0.1.0"

# The API validates an Agent's tools against the runtimes' catalogue without importing it
# (the layer contract in pyproject.toml): the package wires the two together.
from .api.v1alpha1.agent import register_tool_check as _register
from .runtimes.agent_tools import resolve_all as _resolve_all

_register(_resolve_all)

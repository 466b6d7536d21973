"""LMDeploy ``api_server`` (stage ``serve``). Used by the ModelServe builder.

The operator chooses the whole ``lmdeploy serve api_server`` flag list from the spec and writes
it into ``config.json`` as ``spec.args``; the workload runs
``lmdeploy serve api_server <spec.modelPath> <spec.args...>`` and, when the env var
``LMDEPLOY_API_KEYS`` is set (from the spec's Secret, never in the ConfigMap), appends
``--api-keys`` with its whitespace- or comma-separated values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import InvalidSpec, RenderContext, Rendered, rendered

DEFAULT_PORT = 23333
API_KEYS_ENV = "LMDEPLOY_API_KEYS"


def _num(value: float) -> str:
    """``0.8`` -> ``"0.8"``, ``1.0`` -> ``"1.0"`` (argparse float accepts both)."""
    return repr(float(value))


def server_args(
    spec: Any,
    *,
    port: int,
    served_model_name: str,
    adapters: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``lmdeploy serve api_server`` flags the ModelServe spec implies (model path excluded).

    ``adapters`` maps adapter name -> path inside the pod (pytorch engine only).
    """
    args = ["--server-name", "0.0.0.0", "--server-port", str(port)]
    args += ["--backend", str(spec.engine)]
    args += ["--tp", str(int(spec.tensor_parallel))]
    q = spec.quantization
    if q is not None and q.weights:
        args += ["--model-format", str(q.weights)]
    if q is not None and q.kv_cache_bits:
        args += ["--quant-policy", str(int(q.kv_cache_bits))]
    args += ["--max-batch-size", str(int(spec.max_batch_size))]
    if spec.session_len is not None:
        args += ["--session-len", str(int(spec.session_len))]
    args += ["--cache-max-entry-count", _num(spec.cache_max_entry_count)]
    args += ["--model-name", served_model_name]
    if adapters:
        if spec.engine != "pytorch":
            raise InvalidSpec("adapters require engine pytorch")
        args += ["--adapters", *(f"{n}={p}" for n, p in sorted(adapters.items()))]
    return args


def served_model_name(name: str, spec: Any) -> str:
    """What clients put in ``model``: ``spec.servedModelName`` or the resource name."""
    return str(spec.served_model_name or name)


class LMDeploy:
    name = "lmdeploy"
    stage = "serve"

    def render(self, ctx: RenderContext) -> Rendered:
        """``ctx.paths``: ``model`` and ``adapter:<name>`` per adapter (paths in the pod)."""
        s = ctx.spec
        port = int(getattr(s, "port", None) or DEFAULT_PORT)
        adapters = {k.split(":", 1)[1]: v for k, v in ctx.paths.items() if k.startswith("adapter:")}
        args = server_args(
            s,
            port=port,
            served_model_name=served_model_name(ctx.name, s),
            adapters=adapters,
        )
        spec = {"modelPath": ctx.paths["model"], "args": args, "port": port}
        return rendered(
            ctx,
            self.stage,
            spec,
            ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
        )


RUNTIME = LMDeploy()

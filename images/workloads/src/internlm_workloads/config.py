"""The workload side of ``config.json`` (docs/workload-contract.md), as strict dataclasses.

Standard library only, so the operator's tests can import it without any ML dependency:
``parse_config(dict) -> StageConfig``. Keys are camelCase in JSON and snake_case here; unknown
keys are rejected so a version skew between operator and image fails loudly; ``null`` for an
optional key means "use the default".
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

API_VERSION = "workloads.internlm.io/v1"
STAGES = ("pretrain", "finetune", "eval", "serve", "agent")


class ConfigError(ValueError):
    """config.json does not match the contract; the message names the offending key."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


_REQUIRED = dataclasses.MISSING


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: no variant matched")
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: must be one of {allowed}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: must be a list, got {type(value).__name__}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: must be an object, got {type(value).__name__}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported type {tp!r} at {where}")  # a bug in this module


def _build(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: must be an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {_camel(f.name): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or 'config'}: unknown key(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for key, f in fields.items():
        path = f"{where}.{key}" if where else key
        value = data.get(key)
        if value is None:
            if f.default is _REQUIRED and f.default_factory is _REQUIRED:
                raise ConfigError(f"{path}: required")
            continue
        kwargs[f.name] = _convert(hints[f.name], value, path)
    obj = cls(**kwargs)
    check = getattr(obj, "_check", None)
    if check:
        check(where or "spec")
    return obj


def _positive(where: str, **values: int | float | None) -> None:
    for k, v in values.items():
        if v is not None and v <= 0:
            raise ConfigError(f"{where}.{_camel(k)}: must be > 0, got {v}")


# --------------------------------------------------------------------------- pretrain


@dataclass
class ModelSource:
    """``{"config": {...HF config...}}`` to train from scratch or ``{"path": ...}`` to continue.
    ``tokenizer`` (optional) is a tokenizer directory for text data and for the final model."""

    config: dict[str, Any] | None = None
    path: str | None = None
    tokenizer: str | None = None

    def _check(self, where: str) -> None:
        if (self.config is None) == (self.path is None):
            raise ConfigError(f"{where}: exactly one of config or path is required")
        if self.config is not None and "model_type" not in self.config:
            raise ConfigError(f"{where}.config: needs model_type (a Hugging Face config)")


@dataclass
class Checkpoint:
    interval: int = 1000
    keep: int = 3
    resume: bool = True
    on_stop: bool = True
    stop_grace_seconds: int = 30

    def _check(self, where: str) -> None:
        _positive(
            where,
            interval=self.interval,
            keep=self.keep,
            stop_grace_seconds=self.stop_grace_seconds,
        )


@dataclass
class PretrainSpec:
    model: ModelSource
    data_path: str
    seq_length: int
    max_steps: int
    framework: Literal["deepspeed", "internevo"] = "deepspeed"
    global_batch_size: int | None = None
    micro_batch_size: int = 1
    gradient_accumulation: int = 1
    learning_rate: float = 3e-4
    min_learning_rate: float = 0.0
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    ds_config_path: str | None = None

    def _check(self, where: str) -> None:
        _positive(
            where,
            seq_length=self.seq_length,
            max_steps=self.max_steps,
            micro_batch_size=self.micro_batch_size,
            gradient_accumulation=self.gradient_accumulation,
            global_batch_size=self.global_batch_size,
            learning_rate=self.learning_rate,
        )
        if self.min_learning_rate > self.learning_rate:
            raise ConfigError(f"{where}.minLearningRate: above learningRate")
        if self.warmup_steps < 0:
            raise ConfigError(f"{where}.warmupSteps: must be >= 0")


# --------------------------------------------------------------------------- finetune


@dataclass
class LoraSpec:
    r: int = 64
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] | None = None

    def _check(self, where: str) -> None:
        _positive(where, r=self.r, alpha=self.alpha)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}.dropout: must be in [0, 1)")


@dataclass
class FinetuneSpec:
    model_path: str
    dataset_path: str
    method: Literal["lora", "qlora", "full"] = "lora"
    lora: LoraSpec = field(default_factory=LoraSpec)
    dataset_format: Literal["alpaca", "openai"] = "alpaca"
    template: str = "internlm2_chat"
    epochs: int = 1
    learning_rate: float = 2e-4
    max_length: int = 2048
    batch_size: int = 1
    gradient_accumulation: int = 1
    packing: bool = True
    deepspeed_stage: int | None = None
    produce: Literal["adapter", "merged", "both"] = "both"
    xtuner_config_path: str | None = None

    def _check(self, where: str) -> None:
        _positive(
            where,
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            max_length=self.max_length,
            batch_size=self.batch_size,
            gradient_accumulation=self.gradient_accumulation,
        )
        if self.deepspeed_stage not in (None, 0, 1, 2, 3):
            raise ConfigError(f"{where}.deepspeedStage: must be 0-3")
        if self.method == "full" and self.produce != "merged":
            # a full fine-tune has no adapter; its Hugging Face output is the model itself
            self.produce = "merged"


# --------------------------------------------------------------------------- eval


@dataclass
class EvalTarget:
    type: Literal["weights", "endpoint"]
    path: str | None = None
    url: str | None = None
    model: str | None = None
    tokenizer_path: str | None = None

    def _check(self, where: str) -> None:
        if self.type == "weights" and not self.path:
            raise ConfigError(f"{where}.path: required for a weights target")
        if self.type == "endpoint" and not (self.url and self.model):
            raise ConfigError(f"{where}: url and model are required for an endpoint target")


@dataclass
class CustomDataset:
    name: str
    path: str
    format: Literal["mcq", "qa"] = "qa"

    def _check(self, where: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ConfigError(f"{where}.name: letters, digits, _ . - only")


@dataclass
class Generation:
    max_out_len: int = 256
    batch_size: int = 8
    temperature: float = 0.0


@dataclass
class Threshold:
    dataset: str
    min: float
    metric: str | None = None


@dataclass
class EvalSpec:
    target: EvalTarget
    datasets: list[str] = field(default_factory=list)
    custom_datasets: list[CustomDataset] = field(default_factory=list)
    generation: Generation = field(default_factory=Generation)
    thresholds: list[Threshold] = field(default_factory=list)
    data_dir: str | None = None
    opencompass_config_path: str | None = None

    def _check(self, where: str) -> None:
        if not self.datasets and not self.custom_datasets and not self.opencompass_config_path:
            raise ConfigError(f"{where}: no datasets (datasets or customDatasets)")


# --------------------------------------------------------------------------- serve


SERVE_ENGINES = ("lmdeploy", "transformers")


@dataclass
class ServeSpec:
    model_path: str
    args: list[str] = field(default_factory=list)
    port: int = 23333
    # lmdeploy: `lmdeploy serve api_server`; transformers: `transformers serve` (runs on CPU)
    engine: str = "lmdeploy"
    served_model_name: str | None = None  # transformers: the name the pinned model answers to

    def _check(self, where: str) -> None:
        if self.engine not in SERVE_ENGINES:
            raise ConfigError(
                f"{where}.engine: {self.engine!r} is not one of {', '.join(SERVE_ENGINES)}"
            )
        if self.engine == "transformers" and not self.served_model_name:
            raise ConfigError(f"{where}.servedModelName: required with engine transformers")


# --------------------------------------------------------------------------- agent


@dataclass
class AgentLLM:
    url: str
    model: str
    temperature: float = 0.0
    max_new_tokens: int = 512


@dataclass
class Tool:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    # where the operator resolved the name (stages/agent_tools.py); unset: resolved at start-up
    library: Literal["lagent", "agentlego"] | None = None


@dataclass
class AgentSpec:
    llm: AgentLLM
    agent_type: Literal["react", "internlm2"] = "react"
    tools: list[Tool] = field(default_factory=list)
    system_prompt: str | None = None
    port: int = 8080
    max_turns: int = 4

    def _check(self, where: str) -> None:
        _positive(where, max_turns=self.max_turns)


SPECS: dict[str, type] = {
    "pretrain": PretrainSpec,
    "finetune": FinetuneSpec,
    "eval": EvalSpec,
    "serve": ServeSpec,
    "agent": AgentSpec,
}


@dataclass
class Resource:
    kind: str
    namespace: str
    name: str
    uid: str | None = None


@dataclass
class StageConfig:
    api_version: str
    stage: Literal["pretrain", "finetune", "eval", "serve", "agent"]
    spec: Any
    resource: Resource | None = None
    output_dir: str | None = None


def parse_config(data: dict[str, Any], stage: str | None = None) -> StageConfig:
    """Validate a rendered config.json (already loaded) and return typed objects.

    Raises ConfigError with a one-line message naming the key on any mismatch. ``stage``, when
    given, must equal the config's own stage."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: must be an object, got {type(data).__name__}")
    top = {"apiVersion", "stage", "resource", "outputDir", "spec"}
    unknown = sorted(set(data) - top)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {', '.join(unknown)}")
    if data.get("apiVersion") != API_VERSION:
        raise ConfigError(f"apiVersion: expected {API_VERSION!r}, got {data.get('apiVersion')!r}")
    st = data.get("stage")
    if st not in SPECS:
        raise ConfigError(f"stage: must be one of {', '.join(STAGES)}, got {st!r}")
    if stage is not None and st != stage:
        raise ConfigError(f"stage: config is for {st!r} but the entry point is {stage!r}")
    if "spec" not in data:
        raise ConfigError("spec: required")
    resource = _build(Resource, data["resource"], "resource") if data.get("resource") else None
    out = data.get("outputDir")
    if out is not None and not isinstance(out, str):
        raise ConfigError("outputDir: must be a string")
    spec = _build(SPECS[st], data["spec"], "spec")
    return StageConfig(
        api_version=API_VERSION, stage=st, spec=spec, resource=resource, output_dir=out
    )


def load_config(path: str | Path, stage: str | None = None) -> StageConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {p} is not valid JSON: {e}") from e
    return parse_config(data, stage)

"""Agent: a Lagent agent with AgentLego/Lagent tools behind an HTTP API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from .common import (
    API_VERSION,
    HTTP_URL_PATTERN,
    ApiModel,
    Identifier,
    Quantity,
    ResourceName,
    SecretKeyRef,
    ServiceStatus,
    WorkloadCommon,
    cel,
    validations,
)

ToolCheck = Callable[[list[tuple[str, dict[str, Any] | None]]], object]
TOOL_CHECKS: list[ToolCheck] = []
"""Checks of an Agent's tools for the operator's own image (raise ValueError to refuse); the
package registers the runtimes' catalogue (``internlm_operator/__init__.py``)."""


def register_tool_check(check: ToolCheck) -> None:
    if check not in TOOL_CHECKS:
        TOOL_CHECKS.append(check)


AgentType = Literal["react", "internlm2"]
DEFAULT_AGENT_PORT = 8000


class AgentLLM(ApiModel):
    """The model the agent talks to: a ModelServe by name, or an OpenAI-compatible URL."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.modelServe) != has(self.url)",
                "exactly one of modelServe or url must be set",
            ),
            cel(
                "!has(self.url) || has(self.model)",
                "model is required when url is set",
                ".model",
            ),
        )
    )

    model_serve: ResourceName | None = Field(
        default=None, description="Name of a ModelServe in the same namespace."
    )
    url: Annotated[str, Field(max_length=2048, pattern=HTTP_URL_PATTERN)] | None = Field(
        default=None, description="Base URL of an OpenAI-compatible API (ending in /v1)."
    )
    model: Identifier | None = Field(
        default=None,
        description="Model name to request; the ModelServe's served model name if unset.",
    )
    api_key_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the API key (OPENAI_API_KEY)."
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="Sampling temperature.")
    max_new_tokens: int = Field(
        default=1024, ge=1, le=131_072, description="Maximum tokens per model reply."
    )

    @model_validator(mode="after")
    def _checks(self) -> Self:
        if (self.model_serve is None) == (self.url is None):
            raise ValueError("exactly one of modelServe or url must be set")
        if self.url is not None and self.model is None:
            raise ValueError("model is required when url is set")
        return self


class Tool(ApiModel):
    """A tool the agent may call."""

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            pattern=r"^((lagent|agentlego)\.)?[A-Za-z][A-Za-z0-9_]*$",
        ),
    ] = Field(
        description=(
            "Lagent action or AgentLego tool class, e.g. ArxivSearch, Calculator; "
            "lagent.<Name> or agentlego.<Name> picks the library, a bare name is Lagent's "
            "action if Lagent has one, else AgentLego's tool (docs/agent-api.md)."
        )
    )
    params: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Keyword arguments for the tool's constructor, checked against the tool's "
            "parameters when the operator's agent image is used."
        ),
    )


class AgentResources(ApiModel):
    """CPU and memory of each agent pod."""

    cpu: Quantity | None = Field(default=None, description="CPU request and limit per pod.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit per pod.")


class AgentSpec(WorkloadCommon):
    """Desired state of an Agent."""

    llm: AgentLLM = Field(description="The model the agent uses.")
    agent_type: AgentType = Field(
        default="internlm2",
        description="react (ReAct prompting) or internlm2 (InternLM2 tool-call protocol).",
    )
    tools: list[Tool] | None = Field(
        default=None,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Tools the agent may call, with parameters (names unique).",
    )
    system_prompt: Annotated[str, Field(max_length=16384)] | None = Field(
        default=None, description="System prompt; the agent type's default if unset."
    )
    max_turns: int = Field(
        default=10, ge=1, le=100, description="Most model/tool rounds per request."
    )
    replicas: int = Field(default=1, ge=0, le=1000, description="Number of agent pods.")
    port: int = Field(default=DEFAULT_AGENT_PORT, ge=1, le=65535, description="Service port.")
    resources: AgentResources = Field(
        default_factory=AgentResources, description="CPU and memory per pod."
    )

    @model_validator(mode="after")
    def _unique_tools(self) -> Self:
        names = [t.name for t in self.tools or []]
        if len(names) != len(set(names)):
            raise ValueError("tool names must be unique")
        if self.image is None:
            # The operator's own agent image: its tools are known, so a name or param it
            # cannot run is refused now rather than in a crash-looping pod (with spec.image
            # the agent checks at start-up). The check is the runtimes' catalogue, registered
            # by the package (the API imports nothing of ours).
            for check in TOOL_CHECKS:
                check([(t.name, t.params) for t in self.tools or []])
        return self


class AgentLLMStatus(ApiModel):
    """The model endpoint the agent was bound to."""

    endpoint: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="Base URL in use."
    )
    model: Annotated[str, Field(max_length=128)] | None = Field(
        default=None, description="Model name in use."
    )


class AgentStatus(ServiceStatus):
    """Observed state of an Agent."""

    llm: AgentLLMStatus | None = Field(default=None, description="The bound model endpoint.")


class Agent(ApiModel):
    """A Lagent agent with tools, served over HTTP."""

    api_version: Literal["internlm.io/v1alpha1"] = Field(
        default=API_VERSION, description="internlm.io/v1alpha1."
    )
    kind: Literal["Agent"] = Field(default="Agent", description="Agent.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: AgentSpec = Field(description="Desired state.")
    status: AgentStatus | None = Field(default=None, description="Observed state.")

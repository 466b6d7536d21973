"""The kinds the operator reconciles, one line each: the module with its pass, the workload
image stage its pods run, and which kinds in the namespace read its status.

Adding a kind is its module (``reconcile_<kind>(ctx, namespace, name)``) plus one line here;
the kopf handlers, the image lookup and the dependents' wake-ups all come from this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.v1alpha1 import KINDS as API_KINDS


@dataclass(frozen=True)
class Registered:
    kind: str
    module: str  # reconcilers.<module>.reconcile_<kind in lower case>
    stage: str  # the workload image: OperatorConfig.image(stage)
    # Kinds whose pass reads this kind's status (made due at once when it changes): a
    # ModelServe reads its model's producer and its gate, an Agent its ModelServe.
    dependents: tuple[str, ...] = ()

    @property
    def plural(self) -> str:
        return API_KINDS[self.kind].plural

    @property
    def function(self) -> str:
        return f"reconcile_{self.kind.lower()}"


REGISTRY: dict[str, Registered] = {
    r.kind: r
    for r in (
        Registered("TrainJob", "trainjob", "pretrain", ("ModelServe",)),
        Registered("FineTune", "finetune", "finetune", ("ModelServe",)),
        Registered("EvalRun", "evalrun", "eval", ("ModelServe",)),
        Registered("ModelServe", "modelserve", "serve", ("Agent",)),
        Registered("Agent", "agent", "agent"),
    )
}


def stage(kind: str) -> str:
    return REGISTRY[kind].stage


DEPENDENTS: dict[str, tuple[str, ...]] = {
    k: r.dependents for k, r in REGISTRY.items() if r.dependents
}

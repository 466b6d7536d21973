"""Print, as JSON, what the agent image's libraries really offer: each Lagent action's and
AgentLego tool's constructor params, and for AgentLego whether it runs here (else the import
error naming what it needs). Runs in the agent environment with the workload package on the path.
"""

import inspect
import json

from internlm_workloads.stages.agent_tools import agentlego_tools, lagent_actions

NOT_SPEC = ("self", "parser", "toolmeta", "description", "kwargs")


def params(cls: type) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p not in NOT_SPEC]


agentlego = {}
for name, cls in agentlego_tools().items():
    try:
        cls().setup()
        runs = True
    except ImportError as e:
        runs = str(e)
    except ValueError:  # constructed far enough to want an API key: it runs
        runs = True
    agentlego[name] = {"params": params(cls), "runs": runs}
print(
    json.dumps(
        {
            "lagent": {n: params(c) for n, c in lagent_actions().items()},
            "agentlego": agentlego,
        }
    )
)

"""Print, as JSON, the exact chat messages the agent stage's Lagent agent sends to its LLM for
a question: turn 1 (the question) and turn 2 (after the tool answered), given what the model is
to reply at turn 1. Runs in the agent environment with the workload package on the path.

python agent_prompts.py CONFIG_JSON QUESTION REPLY1
"""

import json
import sys

from internlm_workloads.config import load_config
from internlm_workloads.stages.agent import build_agent

cfg = load_config(sys.argv[1], "agent")
question, reply1 = sys.argv[2], sys.argv[3]
agent = build_agent(cfg.spec)
proto, execu, llm = agent._protocol, agent._action_executor, agent._llm
history = [dict(role="user", content=question)]
turn1 = llm.template_parser._prompt2api(proto.format([], history, execu, force_stop=False))
history.append(dict(role="assistant", content=reply1))
_, action, action_input = proto.parse(reply1, execu)
ret = execu(action, action_input)
history.append(proto.format_response(ret))
turn2 = llm.template_parser._prompt2api(proto.format([], history, execu, force_stop=False))
print(
    json.dumps(
        {
            "turn1": turn1,
            "turn2": turn2,
            "action": action,
            "result": ret.format_result() if ret.result else ret.errmsg,
        }
    )
)

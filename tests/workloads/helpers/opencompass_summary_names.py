"""Print, as JSON, the summary row names OpenCompass (the eval image's) gives the datasets of
some config names the operator knows, and the subsets of its own ``mmlu`` summary group: the
real names tests/unit/data/opencompass_summary_names.json holds. Run in the eval venv."""

from __future__ import annotations

import json
import os
import sys
import tempfile

from mmengine.config import Config
from opencompass.configs.summarizers.groups.mmlu import mmlu_summary_groups
from opencompass.utils import dataset_abbr_from_cfg

CONFIGS = {
    # config name -> (module, variable), as internlm_operator.runtimes.opencompass has them
    name: tuple(mv)
    for name, mv in json.loads(sys.argv[1]).items()
}


def abbrs(module: str, variable: str) -> list[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(
            "from mmengine.config import read_base\n"
            f"with read_base():\n    from {module} import {variable} as _d\ndatasets = _d\n"
        )
    try:
        return [dataset_abbr_from_cfg(d) for d in Config.fromfile(f.name)["datasets"]]
    finally:
        os.unlink(f.name)


out = {
    "abbrs": {name: abbrs(m, v) for name, (m, v) in sorted(CONFIGS.items())},
    "mmlu_group": sorted(next(g for g in mmlu_summary_groups if g["name"] == "mmlu")["subsets"]),
}
print(json.dumps(out, indent=1, sort_keys=True))

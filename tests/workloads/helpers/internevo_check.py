"""Run in the pretrain image's environment: load a rendered internevo_config.py with InternEvo's
own loader (``Config.from_file``, as ``launch`` does), build InternEvo's process groups for a
world of WORLD ranks on torch's fake process group (one CPU process, no GPUs), run InternEvo's
``args_sanity_check``, and check the model keys against the model class InternEvo would build.
Prints what InternEvo computed, as JSON.

Usage: python internevo_check.py CONFIG WORLD
"""

from __future__ import annotations

import inspect
import json
import sys

import torch.distributed as dist
from internlm.core.context import Config, ParallelMode
from internlm.core.context import global_context as gpc
from internlm.initialize.launch import args_sanity_check
from internlm.train.pipeline import MODEL_INITIALIZER
from torch.testing._internal.distributed.fake_pg import FakeStore


def main(path: str, world: int) -> dict[str, object]:
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
    gpc.load_config(Config.from_file(path))
    # what gpc.init_global_dist registers, without its tcp:// rendezvous
    gpc._register_dist(
        0, world, dist.GroupMember.WORLD, None, list(range(world)), ParallelMode.GLOBAL
    )
    gpc._global_ranks[ParallelMode.GLOBAL] = 0
    gpc.init_parallel_groups()  # InternEvo's sizes, asserts and every process group
    args_sanity_check()
    c = gpc.config
    cls = MODEL_INITIALIZER.get_module(module_name=c.model_type)
    params = inspect.signature(cls).parameters
    unknown = sorted(k for k in c.model if k not in params)
    return {
        "model_type": c.model_type,
        "model_class": cls.__name__,
        "unknown_model_keys": unknown,
        "world": gpc.get_world_size(ParallelMode.GLOBAL),
        "data": gpc.data_parallel_size,
        "tensor": gpc.tensor_parallel_size,
        "pipeline": gpc.pipeline_parallel_size,
        "weight": gpc.weight_parallel_size,
        "zero1": gpc.zero1_parallel_size,
        "zero1_ranks": gpc.get_ranks_in_group(ParallelMode.ZERO1),
        "mode": c.parallel.tensor["mode"],
        "sequence_parallel": c.parallel.sequence_parallel,
        "packed_length": c.data.packed_length,
        "micro_num": c.data.micro_num,
        "dtype": str(c.model.dtype),
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], int(sys.argv[2]))))

"""CPU-only shims for running XTuner 0.2.0 / mmengine on a machine without a GPU (the real
node's CPU images, the workload tests). The finetune stage puts this directory on the
PYTHONPATH of `xtuner` and sets INTERNLM_CPU_SHIMS=1 only when CUDA is unavailable; they are
inactive otherwise.

- torch.cpu.is_bf16_supported does not exist; XTuner calls it through get_torch_device().
- mmengine calls torch.cuda.set_device(local_rank) and wraps the model in DDP with device_ids,
  both of which fail on CPU (gloo) with 2 processes.
"""

import os

if os.environ.get("INTERNLM_CPU_SHIMS") == "1":
    import torch

    if not torch.cuda.is_available():
        if not hasattr(torch.cpu, "is_bf16_supported"):
            torch.cpu.is_bf16_supported = lambda *a, **k: False  # type: ignore[attr-defined]
        torch.cuda.set_device = lambda *a, **k: None  # type: ignore[assignment]
        _ddp_init = torch.nn.parallel.DistributedDataParallel.__init__

        def _init(self, module, device_ids=None, output_device=None, *a, **k):  # type: ignore[no-untyped-def]
            _ddp_init(self, module, None, None, *a, **k)

        torch.nn.parallel.DistributedDataParallel.__init__ = _init  # type: ignore[method-assign]

# ruff: noqa: E501  (real messages, kept whole)
"""Which training failures the pretrain stage reports as transient (exit 75, a gang restart)
and which as permanent: the table in docs/workload-contract.md, checked against the messages
torch, NCCL and CUDA really print."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "workloads" / "src"))
from internlm_workloads.stages.pretrain_worker import transient_cause


def torch_error(type_name: str, message: str) -> Exception:
    """An exception of the class name torch.distributed raises (torch is not in this venv)."""
    cls = type(type_name, (RuntimeError,), {})
    return cls(message)


@pytest.mark.parametrize(
    "exc,kind",
    [
        (torch_error("DistNetworkError", "failed to recv, got 0 bytes"), "peer"),
        (torch_error("DistStoreError", "Timed out after 901 seconds waiting for clients"), "peer"),
        (RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.88.0.7]:3421"), "peer"),
        (RuntimeError("NCCL communicator was aborted on rank 3."), "peer"),
        (
            torch_error(
                "DistBackendError",
                "NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1275, unhandled "
                "system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5\n"
                "ncclSystemError: System call (e.g. socket, malloc) or external library call failed "
                "or device error.",
            ),
            "nccl",
        ),
        (
            RuntimeError(
                "[Rank 5] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=4112, "
                "OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600031 "
                "milliseconds before timing out."
            ),
            "nccl",
        ),
        (torch_error("DistBackendError", "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting prematurely."), "nccl"),
        (RuntimeError("CUDA error: uncorrectable ECC error encountered\nCUDA kernel errors might be asynchronously reported"), "gpu"),
        (RuntimeError("CUDA error: unspecified launch failure"), "gpu"),
        (RuntimeError("CUDA error: CUDA-capable device(s) is/are busy or unavailable"), "gpu"),
        # the job's own fault: fail fast, a restart would fail the same way
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total capacity)"), None),
        (RuntimeError("CUDA error: device-side assert triggered"), None),
        (ValueError("data has token id 50000 >= the model's vocab_size 32000"), None),
        (FloatingPointError("loss is nan at step 12"), None),
        (KeyError("model_type"), None),
    ],
)  # fmt: skip
def test_transient_cause(exc: Exception, kind: str | None) -> None:
    assert transient_cause(exc) == kind


def test_cause_chain_is_read() -> None:
    """DeepSpeed and torch wrap the backend error: the cause decides."""
    inner = torch_error("DistNetworkError", "Connection reset by peer")
    outer = RuntimeError("step failed")
    outer.__cause__ = inner
    assert transient_cause(outer) == "peer"

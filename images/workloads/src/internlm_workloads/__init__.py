"""Workload entry points run by the internlm-operator's pods: ``python -m internlm_workloads
<stage>`` with stage one of pretrain, finetune, eval, serve, agent (docs/workload-contract.md)."""

__version__ = "0.1.0"

"""Imported by Python at start-up when this directory is on PYTHONPATH: installs the network
guard (internlm_netguard.py) in every process the tests, the demo and the benchmarks start."""

import os

if os.environ.get("INTERNLM_NETGUARD") == "1":
    import internlm_netguard

    internlm_netguard.install()

"""``internlm-operator`` (same arguments) that SIGKILLs itself right after a chosen API write.

The chaos test (``test_chaos.py``) runs the real command line through this wrapper so some of
its kills land mid-pass at a precise point, not only at random moments:
``INTERNLM_CHAOS_KILL_AT=<op>:<what>`` kills the process right after the first successful

- ``apply:<Kind>``: server-side apply of a child of that kind (``apply:Job`` = the Job was
  just created, nothing after it in the pass ran: no status, no Event);
- ``status:<Kind>``: status patch of one of our resources of that kind (before its Events);
- ``event:*``: Event created;

``<point>#<n>``: at the n-th such write instead of the first.

Unset, it is ``internlm-operator`` unchanged. The line it prints before dying says where.
Only the client layer (``Kube``) is patched, so the reconcilers run as shipped.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from internlm_operator import cli
from internlm_operator.reconcilers.kube.client import Kube


def die(where: str) -> None:
    sys.stderr.write(f"chaos: SIGKILL right after {where}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    point, _, nth = point.partition("#")
    op, _, what = point.partition(":")
    left = [int(nth or 1)]
    apply, patch_status, create = Kube.apply, Kube.patch_status, Kube.create

    def hit(where: str) -> None:
        left[0] -= 1
        if left[0] == 0:
            die(where)

    def apply_then_die(self: Kube, manifest: dict[str, Any]) -> Any:
        out = apply(self, manifest)
        if op == "apply" and manifest.get("kind") == what:
            hit(f"apply {manifest['kind']} {manifest['metadata'].get('name')}")
        return out

    def patch_status_then_die(self: Kube, api_version: str, kind: str, *a: Any, **k: Any) -> Any:
        out = patch_status(self, api_version, kind, *a, **k)
        if op == "status" and kind == what:
            hit(f"status patch of {kind} {a[1] if len(a) > 1 else ''}")
        return out

    def create_then_die(self: Kube, manifest: dict[str, Any]) -> Any:
        out = create(self, manifest)
        if op == "event" and manifest.get("kind") == "Event":
            hit(f"Event {manifest.get('reason')} on {manifest['involvedObject'].get('name')}")
        return out

    Kube.apply = apply_then_die  # type: ignore[method-assign]
    Kube.patch_status = patch_status_then_die  # type: ignore[method-assign]
    Kube.create = create_then_die  # type: ignore[method-assign]


if __name__ == "__main__":
    point = os.environ.get("INTERNLM_CHAOS_KILL_AT", "")
    if point:
        arm(point)
    sys.exit(cli.main(sys.argv[1:]))

#!/usr/bin/env python3
"""Real Kueue (``KUEUE_VERSION`` in versions.env) run out of cluster against the local cluster.

``build-binaries.sh kueue`` builds the binary through the Go module proxy and caches it with the
CRDs and webhook manifests of the same module source. ``up`` installs and starts it the way
``../shared/notes/kueue.md`` describes; ``down`` removes everything it made.

    localkueue.py up [--manage-jobs-without-queue-name]
    localkueue.py down
    localkueue.py status

- Every listener binds 127.0.0.1: webhooks ``PORT_BASE+70``, metrics ``+71``, health ``+72``;
  the visibility API server is off (``VisibilityOnDemand=false``: it would listen on all
  interfaces), leader election off, pprof off.
- Its own CA and serving certificate (SAN ``IP:127.0.0.1``) in ``<cluster state>/kueue/certs``;
  the webhooks and the CRDs' conversion webhooks point at ``https://127.0.0.1:<port>`` with
  that CA. Kueue v0.17 reads its metrics certificate from the fixed path
  ``/etc/kueue/metrics/certs``: it is written there and removed by ``down`` (with ``/etc/kueue``
  when ``up`` made it).
- Only the ``batch/job`` integration; only the Job webhooks and Kueue's own kinds are
  registered (the pod/deployment/statefulset webhooks would block every pod while those
  frameworks are off). Job webhooks skip kube-system and kueue-system, as upstream's.
- ``manageJobsWithoutQueueName`` applies only in namespaces labelled
  ``MANAGED_NAMESPACE_LABEL=true`` (Kueue's ``managedJobsNamespaceSelector``, with the feature
  gate ``ManagedJobsNamespaceSelectorAlwaysRespected=false`` so that the selector exempts
  nothing else), so turning it on never touches Jobs of other tests sharing the cluster.

Standard library only (like localcluster.py); kubectl does the API work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import localcluster as lc

NAME = "kueue"
WEBHOOK_PORT = lc.PORT_BASE + 70
METRICS_PORT = lc.PORT_BASE + 71
HEALTH_PORT = lc.PORT_BASE + 72
NAMESPACE = "kueue-system"
MANAGED_NAMESPACE_LABEL = "internlm.io/kueue-managed"
METRICS_CERTS = Path("/etc/kueue/metrics/certs")
# The CRDs upstream's kustomization gives a conversion webhook (config/components/crd/patches).
CONVERSION_CRDS = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")
# Webhooks kept from the module's manifests: the Job integration and Kueue's own kinds.
KEEP_WEBHOOKS = {
    "mjob.kb.io",
    "vjob.kb.io",
    "mclusterqueue.kb.io",
    "vclusterqueue.kb.io",
    "vcohort.kb.io",
    "mresourceflavor.kb.io",
    "vresourceflavor.kb.io",
    "mworkload.kb.io",
    "vworkload.kb.io",
}
WEBHOOK_CONFIGS = ("internlm-kueue-mutating", "internlm-kueue-validating")
SYSTEM_NAMESPACES = ["kube-system", NAMESPACE]


def state() -> Path:
    return lc.STATE / "kueue"


def home() -> Path:
    return lc.CACHE / "bin" / f"kueue-{lc.versions()['KUEUE_VERSION']}"


def available() -> bool:
    h = home()
    return os.access(h / "kueue", os.X_OK) and (h / "webhook" / "manifests.yaml").is_file()


def log(msg: str) -> None:
    print(f"[localkueue] {msg}", file=sys.stderr, flush=True)


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    res = lc.kubectl(*args, input=input)
    if check and res.returncode != 0:
        raise lc.ClusterError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def apply(docs: list[dict]) -> None:
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=internlm-localkueue",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )


# ---------------------------------------------------------------------------- certificates


def make_certs(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "3650", "-subj", "/CN=internlm-local-kueue-ca",
    )  # fmt: skip
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr",
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "tls.crt", "-days", "3650", "-extfile", "server.ext",
    )  # fmt: skip


def ca_bundle() -> str:
    import base64

    return base64.b64encode((state() / "certs" / "ca.crt").read_bytes()).decode()


def client_config(path: str) -> dict:
    return {"url": f"https://127.0.0.1:{WEBHOOK_PORT}{path}", "caBundle": ca_bundle()}


# ---------------------------------------------------------------------------- manifests


def load_yaml_docs(path: Path) -> list[dict]:
    """The module's YAML, parsed with kubectl (this file has no third-party imports)."""
    out = kubectl("create", "--dry-run=client", "-o", "json", "-f", str(path))
    docs, dec, i = [], json.JSONDecoder(), 0
    while i < len(out.rstrip()):  # one JSON object per YAML document, back to back
        doc, i = dec.raw_decode(out, i)
        docs += doc["items"] if doc.get("kind") == "List" else [doc]
        while i < len(out) and out[i].isspace():
            i += 1
    return docs


def crds() -> list[dict]:
    docs = []
    for f in sorted((home() / "crd").glob("*.yaml")):
        for crd in load_yaml_docs(f):
            if crd["spec"]["names"]["plural"] in CONVERSION_CRDS:
                crd["spec"]["conversion"] = {
                    "strategy": "Webhook",
                    "webhook": {
                        "clientConfig": client_config("/convert"),
                        "conversionReviewVersions": ["v1"],
                    },
                }
            docs.append(crd)
    return docs


def webhooks() -> list[dict]:
    out = []
    for cfg in load_yaml_docs(home() / "webhook" / "manifests.yaml"):
        kept = []
        for w in cfg.get("webhooks") or []:
            if w["name"] not in KEEP_WEBHOOKS:
                continue
            w["clientConfig"] = client_config(w["clientConfig"]["service"]["path"])
            if w["name"] in ("mjob.kb.io", "vjob.kb.io"):
                w["namespaceSelector"] = {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": SYSTEM_NAMESPACES,
                        }
                    ]
                }
            kept.append(w)
        mutating = cfg["kind"] == "MutatingWebhookConfiguration"
        cfg["metadata"] = {"name": WEBHOOK_CONFIGS[0 if mutating else 1]}
        cfg["webhooks"] = kept
        out.append(cfg)
    return out


def configuration(manage_jobs_without_queue_name: bool) -> str:
    cfg = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{HEALTH_PORT}"},
        "metrics": {"bindAddress": f"127.0.0.1:{METRICS_PORT}"},
        "webhook": {
            "host": "127.0.0.1",
            "port": WEBHOOK_PORT,
            "certDir": str(state() / "certs"),
        },
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": manage_jobs_without_queue_name,
        "managedJobsNamespaceSelector": {"matchLabels": {MANAGED_NAMESPACE_LABEL: "true"}},
        "integrations": {"frameworks": ["batch/job"]},
        "clientConnection": {"qps": 50, "burst": 100},
    }
    return json.dumps(cfg, indent=2)  # JSON is YAML


# ---------------------------------------------------------------------------- process


def ready() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def running() -> bool:
    return lc.alive(lc.read_pid(NAME))


def webhook_serves() -> bool:
    """A server-side dry run of a ResourceFlavor goes through Kueue's webhooks."""
    res = lc.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "ResourceFlavor",
                "metadata": {"name": "internlm-webhook-probe"},
            }
        ),
    )
    return res.returncode == 0


def up(manage_jobs_without_queue_name: bool = False) -> None:
    """Install (CRDs, namespace, certificates) and start Kueue; restart it with this
    configuration when it already runs with another."""
    t0 = time.monotonic()
    if not available():
        raise lc.ClusterError(
            f"Kueue is not built ({home()}): run `bash e2e/cluster/build-binaries.sh kueue` "
            "(~12 min cold on 2 cores)"
        )
    if not lc.healthy():
        raise lc.ClusterError("the local cluster is not running (`localcluster.py up`)")
    d = state()
    cfg_text = configuration(manage_jobs_without_queue_name)
    if running() and (d / "config.yaml").exists() and (d / "config.yaml").read_text() == cfg_text:
        log("already running")
        return
    stop()
    busy = [p for p in (WEBHOOK_PORT, METRICS_PORT, HEALTH_PORT) if lc.port_open(p)]
    if busy:
        raise lc.ClusterError(
            f"ports {busy} already in use on 127.0.0.1 (another Kueue? pick another "
            "INTERNLM_CLUSTER_PORT_BASE)"
        )
    if not (d / "certs" / "tls.crt").exists():
        make_certs(d / "certs")
    if not METRICS_CERTS.joinpath("tls.crt").exists():
        if not Path("/etc/kueue").exists():
            (d / "made-etc-kueue").write_text("")
        METRICS_CERTS.mkdir(parents=True, exist_ok=True)
        for f in ("tls.crt", "tls.key"):
            shutil.copy(d / "certs" / f, METRICS_CERTS / f)
        (d / "made-metrics-certs").write_text("")
    (d / "config.yaml").write_text(cfg_text)
    kubectl("create", "namespace", NAMESPACE, check=False)
    apply(crds())
    names = [f"crd/{c}.kueue.x-k8s.io" for c in CONVERSION_CRDS]
    # Just (re)created CRDs have no conditions yet, which `kubectl wait` takes as an error.
    deadline = time.monotonic() + 60
    while lc.kubectl("wait", "--for=condition=Established", "--timeout=10s", *names).returncode:
        if time.monotonic() > deadline:
            raise lc.ClusterError("Kueue's CRDs did not become Established in 60 s")
        time.sleep(0.5)
    lc.start(
        NAME,
        [
            str(home() / "kueue"),
            f"--config={d / 'config.yaml'}",
            f"--kubeconfig={lc.STATE / 'kubeconfig'}",
            # The namespace selector limits only manageJobsWithoutQueueName (Kueue <= 0.14's
            # behaviour); by default since 0.15 it would exempt every other namespace entirely.
            "--feature-gates=VisibilityOnDemand=false,"
            "ManagedJobsNamespaceSelectorAlwaysRespected=false",
        ],
    )
    lc.wait_for("Kueue /readyz", ready, 90, NAME)
    # Webhooks only once Kueue answers: with failurePolicy Fail they would block every Job.
    apply(webhooks())
    lc.wait_for("Kueue's webhooks", webhook_serves, 60, NAME)
    mode = " (manageJobsWithoutQueueName)" if manage_jobs_without_queue_name else ""
    log(f"Kueue up{mode} in {time.monotonic() - t0:.1f}s; log: {lc.STATE / 'logs' / 'kueue.log'}")


def stop() -> None:
    """Stop the process (webhooks first, so nothing is blocked while it is gone)."""
    pid = lc.read_pid(NAME)
    if not (lc.alive(pid) and pid is not None and lc.ours(pid)):
        return
    for w in WEBHOOK_CONFIGS:
        kind = (
            "mutatingwebhookconfiguration" if "mutating" in w else "validatingwebhookconfiguration"
        )
        lc.kubectl("delete", kind, w, "--ignore-not-found")
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while lc.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if lc.alive(pid):
        os.killpg(pid, signal.SIGKILL)


def down() -> None:
    """Stop Kueue and remove all it made: webhooks, Kueue objects (finalizers stripped: no
    Kueue is left to remove them), CRDs, its namespace, certificates, the metrics cert path."""
    for w in WEBHOOK_CONFIGS:
        kind = (
            "mutatingwebhookconfiguration" if "mutating" in w else "validatingwebhookconfiguration"
        )
        lc.kubectl("delete", kind, w, "--ignore-not-found")
    stop()
    if lc.healthy():
        plurals = [p.stem.split("_", 1)[1] for p in sorted((home() / "crd").glob("*.yaml"))]
        for plural in plurals:
            res = lc.kubectl("get", f"{plural}.kueue.x-k8s.io", "-A", "-o", "json")
            if res.returncode != 0:
                continue
            for item in json.loads(res.stdout).get("items", []):
                md = item["metadata"]
                ns = ["-n", md["namespace"]] if md.get("namespace") else []
                if md.get("finalizers"):
                    lc.kubectl(
                        "patch", f"{plural}.kueue.x-k8s.io", md["name"], *ns, "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}',
                    )  # fmt: skip
        lc.kubectl(
            "delete", "--ignore-not-found", "--wait=true", "--timeout=60s",
            *[f"crd/{p}.kueue.x-k8s.io" for p in plurals],
        )  # fmt: skip
        lc.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
    d = state()
    if (d / "made-metrics-certs").exists():
        shutil.rmtree(METRICS_CERTS, ignore_errors=True)
        if (d / "made-etc-kueue").exists():
            shutil.rmtree("/etc/kueue", ignore_errors=True)
    shutil.rmtree(d, ignore_errors=True)
    lc.pid_file(NAME).unlink(missing_ok=True)
    log("Kueue removed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--manage-jobs-without-queue-name", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.manage_jobs_without_queue_name)
        elif args.command == "down":
            down()
        else:
            ok = running() and ready()
            print(
                f"{'kueue':24} {'running pid ' + str(lc.read_pid(NAME)) if ok else 'not running'}"
            )
            return 0 if ok else 1
    except lc.ClusterError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

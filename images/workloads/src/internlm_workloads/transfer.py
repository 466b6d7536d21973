"""Inputs fetched before a stage starts, outputs uploaded after it succeeded
(docs/workload-contract.md, "Inputs and outputs from hubs and object stores").

The operator renders one ``fetch-<input>`` init container per input
(``python -m internlm_workloads fetch``), the input in ``INTERNLM_INPUTS`` (JSON, no secrets):

    [{"name": "model", "source": "hf://owner/repo@rev", "dest": "/mnt/inputs/model",
      "repoType": "model", "allowPatterns": ["*.json", "*.safetensors"]}, ...]

``source`` is ``hf://<repo>[@<revision>]`` (huggingface_hub's ``snapshot_download``),
``ms://<repo>[@<revision>]`` (modelscope's ``snapshot_download``) or ``s3://<bucket>/<key>``
(boto3: one object, or every object under the prefix ``<key>/``). Credentials come only from
the environment the operator sets from Secrets (``HF_TOKEN``, ``MODELSCOPE_API_TOKEN``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``; endpoint ``AWS_ENDPOINT_URL_S3``,
``HF_ENDPOINT``, ``MODELSCOPE_ENDPOINT``); they are never logged or reported.

What each fetched (repo, commit, bytes, files) is left in ``INTERNLM_FETCHED_DIR`` on the
inputs volume; the stage adds it to its own result (``fetched``). With ``INTERNLM_OUTPUT_URI``
(``s3://bucket/prefix``) the output directory is uploaded there once the stage has succeeded
(by rank 0 of a multi-node job).

Every failure is a :class:`TransferError`: a one-line reason starting with its kind
(``RepoNotFound``, ``RevisionNotFound``, ``Unauthorized``, ``BucketNotFound``,
``ObjectNotFound``, ``NoSpaceLeft``, ``UploadFailed``, ``Unreachable``, ``FetchFailed``),
also given as ``failure`` in the termination message, so the operator's status names it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import EXIT_TRANSIENT, StageError, log, one_line

INPUTS_ENV = "INTERNLM_INPUTS"
FETCHED_DIR_ENV = "INTERNLM_FETCHED_DIR"
OUTPUT_URI_ENV = "INTERNLM_OUTPUT_URI"
ADDRESSING_ENV = "INTERNLM_S3_ADDRESSING_STYLE"
ATTEMPTS_ENV = "INTERNLM_FETCH_ATTEMPTS"
FAILURES = (
    "RepoNotFound",
    "RevisionNotFound",
    "Unauthorized",
    "BucketNotFound",
    "ObjectNotFound",
    "NoSpaceLeft",
    "UploadFailed",
    "Unreachable",
    "FetchFailed",
)
# Kept out of an upload: huggingface_hub's and our own bookkeeping.
SKIP_UPLOAD = (".cache",)


class TransferError(StageError):
    """A failed fetch or upload; ``failure`` is one of :data:`FAILURES`."""

    def __init__(self, failure: str, message: str, exit_code: int = 1) -> None:
        assert failure in FAILURES, failure
        super().__init__(f"{failure}: {one_line(message, 600)}", exit_code, failure=failure)
        self.failure = failure


@dataclass(frozen=True)
class Input:
    name: str
    source: str
    dest: str
    repo_type: str = "model"
    allow_patterns: list[str] | None = None
    # The shared hub cache's fetch Job: a file written (with the result) once ``dest`` is
    # complete; when it is already there, nothing is fetched again.
    complete_marker: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Input:
        if not isinstance(raw, dict) or not all(k in raw for k in ("name", "source", "dest")):
            raise StageError(f"bad {INPUTS_ENV} entry {raw!r}: name, source and dest are needed")
        repo_type = str(raw.get("repoType") or "model")
        if repo_type not in ("model", "dataset"):
            raise StageError(f"bad {INPUTS_ENV} entry {raw['name']!r}: repoType {repo_type!r}")
        patterns = raw.get("allowPatterns")
        return cls(
            name=str(raw["name"]),
            source=str(raw["source"]),
            dest=str(raw["dest"]),
            repo_type=repo_type,
            allow_patterns=[str(p) for p in patterns] if patterns else None,
            complete_marker=str(raw["completeMarker"]) if raw.get("completeMarker") else None,
        )


@dataclass
class Fetched:
    """What one input fetched, for the termination message (and the operator's status)."""

    name: str
    source: str
    revision: str | None = None  # the commit a hub revision resolved to, or an S3 ETag
    bytes: int = 0
    files: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "source": self.source}
        if self.revision:
            out["revision"] = self.revision
        out.update(bytes=self.bytes, files=self.files, seconds=round(self.seconds, 1))
        return out


def inputs_from_env(env: dict[str, str] | None = None) -> list[Input]:
    raw = (env if env is not None else os.environ).get(INPUTS_ENV, "").strip()
    if not raw:
        return []
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise StageError(f"{INPUTS_ENV} is not JSON: {e}") from e
    if not isinstance(doc, list):
        raise StageError(f"{INPUTS_ENV} must be a JSON list")
    return [Input.parse(d) for d in doc]


def fetch_all(inputs: Iterable[Input]) -> list[dict[str, Any]]:
    """Fetch every input in order; the first failure stops (a :class:`TransferError`)."""
    done = []
    for inp in inputs:
        prior = _completed(inp)
        if prior is not None:
            log(f"input {inp.name}: {inp.dest} is complete ({inp.complete_marker}); not fetched")
            done.append(prior)
            continue
        t0 = time.monotonic()
        log(f"fetching input {inp.name}: {inp.source} -> {inp.dest}")
        if inp.source.startswith("hf://"):
            got = fetch_hf(inp)
        elif inp.source.startswith("ms://"):
            got = fetch_ms(inp)
        elif inp.source.startswith("s3://"):
            got = fetch_s3(inp)
        else:
            raise StageError(f"input {inp.name}: cannot fetch {inp.source!r}")
        got.seconds = time.monotonic() - t0
        log(
            f"fetched input {inp.name}: {got.files} files, {got.bytes} bytes"
            + (f" at {got.revision}" if got.revision else "")
            + f" in {got.seconds:.1f}s"
        )
        row = got.to_dict()
        if inp.complete_marker:
            from .report import write_json_atomic

            write_json_atomic(Path(inp.complete_marker), row)  # last: the entry is complete
            row = {**row, "cached": False}
        done.append(row)
    return done


def _completed(inp: Input) -> dict[str, Any] | None:
    """What an earlier fetch of this input recorded in its complete marker, if there is one."""
    if not inp.complete_marker:
        return None
    try:
        doc = json.loads(Path(inp.complete_marker).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    return {**doc, "name": inp.name, "cached": True}


# -- helpers ----------------------------------------------------------------------------------


def _attempts() -> int:
    try:
        return max(1, int(os.environ.get(ATTEMPTS_ENV, "3")))
    except ValueError:
        return 3


def _split_repo(source: str) -> tuple[str, str | None]:
    repo, _, rev = source[len("hf://") :].partition("@")
    return repo, rev or None


def _tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path`` (or of the file), bookkeeping directories left out."""
    if path.is_file():
        return path.stat().st_size, 1
    total = n = 0
    for p in _files(path):
        total += p.stat().st_size
        n += 1
    return total, n


def _files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_UPLOAD)
        for f in sorted(filenames):
            out.append(Path(dirpath) / f)
    return out


def _free_bytes(dest: Path) -> int:
    p = dest
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _check_space(name: str, dest: Path, needed: int) -> None:
    free = _free_bytes(dest)
    if needed > free:
        raise TransferError(
            "NoSpaceLeft",
            f"input {name} needs {needed} bytes but {dest} has {free} bytes free",
        )


def _no_space(e: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _retrying(
    what: str,
    call: Callable[[], Any],
    transient: tuple[type[BaseException], ...],
    also: Callable[[BaseException], bool] = lambda e: False,
) -> Any:
    """Run ``call``; a transient error (connection, timeout, 5xx) is retried with backoff.
    Downloads resume where they stopped (huggingface_hub's ``.incomplete`` files)."""
    n = _attempts()
    for attempt in range(1, n + 1):
        try:
            return call()
        except Exception as e:
            if attempt == n or not (isinstance(e, transient) or also(e)):
                raise
            delay = min(30.0, 2.0**attempt)
            log(f"{what}: attempt {attempt}/{n} failed ({type(e).__name__}); retrying in {delay}s")
            time.sleep(delay)
    raise AssertionError("unreachable")


# -- Hugging Face -----------------------------------------------------------------------------


def fetch_hf(inp: Input) -> Fetched:
    import huggingface_hub as hh
    from huggingface_hub import errors as herr

    repo, rev = _split_repo(inp.source)
    token = os.environ.get("HF_TOKEN") or None
    dest = Path(inp.dest)
    what = f"{'dataset' if inp.repo_type == 'dataset' else 'model'} repo {repo}"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    transient = _hf_transient()

    def status_of(e: BaseException) -> int | None:
        resp = getattr(e, "response", None)
        code = getattr(resp, "status_code", None)
        return int(code) if code is not None else None

    def classify(e: BaseException) -> TransferError:
        code = status_of(e)
        if _no_space(e):
            return TransferError("NoSpaceLeft", f"{what} into {dest}: {e}")
        if isinstance(e, herr.RevisionNotFoundError):
            return TransferError(
                "RevisionNotFound", f"{what} has no revision {rev!r} on {endpoint}"
            )
        if isinstance(e, herr.GatedRepoError):
            return TransferError("Unauthorized", f"{what} is gated on {endpoint}: {_hint(token)}")
        if isinstance(e, herr.RepositoryNotFoundError):
            # the Hub answers 401 for a private repo without a valid token, 404 otherwise
            if code == 401:
                return TransferError(
                    "Unauthorized",
                    f"{what} on {endpoint} is private or does not exist: {_hint(token)}",
                )
            return TransferError("RepoNotFound", f"{what} does not exist on {endpoint}")
        if code in (401, 403):
            return TransferError("Unauthorized", f"{what} on {endpoint}: {_hint(token)}")
        if isinstance(e, transient) or _server_error(e):
            return TransferError(
                "Unreachable",
                f"{what}: {endpoint} did not answer ({type(e).__name__}: {e})",
                EXIT_TRANSIENT,
            )
        if isinstance(e, herr.LocalEntryNotFoundError):
            return TransferError("Unreachable", f"{what}: {e}", EXIT_TRANSIENT)
        return TransferError("FetchFailed", f"{what}: {type(e).__name__}: {e}")

    api = hh.HfApi(token=token)
    try:
        info = _retrying(
            f"{what} revision",
            lambda: api.repo_info(
                repo, repo_type=inp.repo_type, revision=rev, files_metadata=True, token=token
            ),
            transient,
            _server_error,
        )
        commit = str(info.sha)
        sizes = {s.rfilename: int(s.size or 0) for s in (info.siblings or [])}
        wanted = _matching(list(sizes), inp.allow_patterns)
        _check_space(inp.name, dest, sum(sizes[f] for f in wanted))
        dest.mkdir(parents=True, exist_ok=True)
        _retrying(
            f"{what} download",
            lambda: hh.snapshot_download(
                repo,
                repo_type=inp.repo_type,
                revision=commit,  # the commit just resolved: every file from one revision
                local_dir=str(dest),
                allow_patterns=inp.allow_patterns,
                token=token,
                max_workers=4,
            ),
            transient,
            _server_error,
        )
    except TransferError:
        raise
    except Exception as e:
        raise classify(e) from e
    size, n = _tree_size(dest)
    return Fetched(inp.name, inp.source, commit, size, n)


def _hint(token: str | None) -> str:
    return (
        "the token given (hubTokens) is not allowed to read it"
        if token
        else "no token was given (set hubTokens.huggingFace)"
    )


def _matching(files: list[str], patterns: list[str] | None) -> list[str]:
    if not patterns:
        return files
    import fnmatch

    return [f for f in files if any(fnmatch.fnmatch(f, p) for p in patterns)]


def _hf_transient() -> tuple[type[BaseException], ...]:
    """Errors worth another attempt: the connection or a timeout (huggingface_hub 2.x speaks
    httpx, 0.x requests)."""
    out: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for mod, names in (
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            m = __import__(mod)
        except ImportError:
            continue
        out += [getattr(m, n) for n in names if hasattr(m, n)]
    return tuple(out)


def _server_error(e: BaseException) -> bool:
    code = getattr(getattr(e, "response", None), "status_code", None)
    return code is not None and int(code) >= 500


# -- ModelScope -------------------------------------------------------------------------------


def fetch_ms(inp: Input) -> Fetched:
    try:
        from modelscope.hub.snapshot_download import snapshot_download
        from modelscope_hub import errors as merr
    except ImportError as e:
        raise StageError(f"input {inp.name}: modelscope is not installed in this image") from e
    repo, _, rev = inp.source[len("ms://") :].partition("@")
    token = os.environ.get("MODELSCOPE_API_TOKEN") or None
    dest = Path(inp.dest)
    what = f"ModelScope {inp.repo_type} {repo}"
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _retrying(
            what,
            lambda: snapshot_download(
                repo_id=repo,
                repo_type=inp.repo_type,
                revision=rev or None,
                local_dir=str(dest),
                allow_patterns=inp.allow_patterns,
                token=token,
            ),
            (merr.NetworkError,),
        )
    except Exception as e:
        if _no_space(e):
            raise TransferError("NoSpaceLeft", f"{what} into {dest}: {e}") from e
        text = str(e).lower()
        code = getattr(getattr(e, "response", None), "status_code", None)
        endpoint = os.environ.get("MODELSCOPE_ENDPOINT") or "https://www.modelscope.cn"
        what = f"{what} on {endpoint}"
        if isinstance(e, merr.AuthenticationError | merr.PermissionDeniedError) or code in (
            401,
            403,
        ):
            raise TransferError("Unauthorized", f"{what}: {e}") from e
        if isinstance(e, merr.NotExistError) or code == 404:
            kind = "RevisionNotFound" if rev and "revision" in text else "RepoNotFound"
            raise TransferError(kind, f"{what}: {e}") from e
        if isinstance(e, merr.NetworkError):
            raise TransferError("Unreachable", f"{what}: {e}", EXIT_TRANSIENT) from e
        raise TransferError("FetchFailed", f"{what}: {type(e).__name__}: {e}") from e
    size, n = _tree_size(dest)
    return Fetched(inp.name, inp.source, rev or None, size, n)


# -- S3 ---------------------------------------------------------------------------------------


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StageError(f"{uri!r} names no bucket")
    return bucket, key


def s3_client() -> Any:
    """A boto3 S3 client from the environment: credentials (AWS_ACCESS_KEY_ID, ...), region,
    endpoint (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, read by botocore itself) and the
    addressing style (path for most S3-compatible servers)."""
    import boto3
    from botocore.config import Config

    style = os.environ.get(ADDRESSING_ENV) or "auto"
    cfg = Config(
        s3={"addressing_style": style},
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
    )
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    return boto3.session.Session().client("s3", region_name=region, config=cfg)


def _s3_code(e: BaseException) -> str:
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        return str((resp.get("Error") or {}).get("Code") or "")
    return ""


def _s3_error(e: BaseException, what: str, bucket: str, upload: bool = False) -> TransferError:
    from botocore import exceptions as bex

    code = _s3_code(e)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    where = f" at {endpoint}" if endpoint else ""
    if _no_space(e):
        return TransferError("NoSpaceLeft", f"{what}: {e}")
    if code in ("NoSuchBucket",):
        kind = "UploadFailed" if upload else "BucketNotFound"
        return TransferError(kind, f"{what}: bucket {bucket} does not exist{where}")
    if isinstance(e, bex.NoCredentialsError | bex.PartialCredentialsError):
        kind = "UploadFailed" if upload else "Unauthorized"
        return TransferError(kind, f"{what}: no S3 credentials (set objectStore credentials)")
    if code in (
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403",
        "401",
        "ExpiredToken",
    ):
        kind = "UploadFailed" if upload else "Unauthorized"
        return TransferError(kind, f"{what}: access denied to bucket {bucket}{where} ({code})")
    if code in ("NoSuchKey", "404") and not upload:
        return TransferError("ObjectNotFound", f"{what}: no such object{where}")
    if isinstance(e, bex.EndpointConnectionError | bex.ConnectTimeoutError | bex.ReadTimeoutError):
        if upload:
            return TransferError("UploadFailed", f"{what}: {e}")
        return TransferError("Unreachable", f"{what}: {e}", EXIT_TRANSIENT)
    kind = "UploadFailed" if upload else "FetchFailed"
    return TransferError(kind, f"{what}: {type(e).__name__}: {e}")


def fetch_s3(inp: Input) -> Fetched:
    """One object (``dest`` becomes that file) or every object under ``<key>/`` (``dest``
    becomes a directory mirroring the keys below the prefix)."""
    bucket, key = split_s3(inp.source)
    dest = Path(inp.dest)
    what = f"input {inp.name} {inp.source}"
    try:
        s3 = s3_client()
        obj = None
        if key and not key.endswith("/"):
            try:
                obj = s3.head_object(Bucket=bucket, Key=key)
            except Exception as e:
                if _s3_code(e) not in ("404", "NoSuchKey", "NotFound"):
                    raise
        if obj is not None:
            _check_space(inp.name, dest.parent, int(obj.get("ContentLength") or 0))
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(dest))
            etag = str(obj.get("ETag") or "").strip('"') or None
            return Fetched(inp.name, inp.source, etag, dest.stat().st_size, 1)
        prefix = key.rstrip("/") + "/" if key else ""
        objects = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            objects += [o for o in page.get("Contents") or [] if not o["Key"].endswith("/")]
        if not objects:
            raise TransferError(
                "ObjectNotFound", f"{what}: no object {key!r} and nothing under {prefix!r}"
            )
        _check_space(inp.name, dest, sum(int(o.get("Size") or 0) for o in objects))
        for o in objects:
            target = dest / o["Key"][len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, o["Key"], str(target))
    except TransferError:
        raise
    except Exception as e:
        raise _s3_error(e, what, bucket) from e
    size, n = _tree_size(dest)
    return Fetched(inp.name, inp.source, None, size, n)


def upload_dir(src: Path, uri: str) -> dict[str, Any]:
    """Upload every file under ``src`` to ``uri`` (``s3://bucket/prefix``), keys mirroring the
    relative paths. Any error is an ``UploadFailed`` :class:`TransferError`."""
    if not uri.startswith("s3://"):
        raise TransferError("UploadFailed", f"cannot upload to {uri!r}: only s3:// is supported")
    bucket, prefix = split_s3(uri)
    prefix = prefix.strip("/")
    t0 = time.monotonic()
    files = _files(src) if src.exists() else []
    log(f"uploading {len(files)} files from {src} to {uri}")
    total = 0
    try:
        s3 = s3_client()
        s3.head_bucket(Bucket=bucket)
        for p in files:
            rel = p.relative_to(src).as_posix()
            s3.upload_file(str(p), bucket, f"{prefix}/{rel}" if prefix else rel)
            total += p.stat().st_size
    except TransferError:
        raise
    except Exception as e:
        if _s3_code(e) in ("404", "NotFound"):  # head_bucket's answer for a missing bucket
            raise TransferError(
                "UploadFailed", f"output {uri}: bucket {bucket} does not exist"
            ) from e
        raise _s3_error(e, f"output {uri}", bucket, upload=True) from e
    seconds = time.monotonic() - t0
    log(f"uploaded {len(files)} files, {total} bytes to {uri} in {seconds:.1f}s")
    return {"uri": uri, "bytes": total, "files": len(files), "seconds": round(seconds, 1)}


def upload_output(out_dir: str | None) -> dict[str, Any] | None:
    """Upload the output directory to ``INTERNLM_OUTPUT_URI`` if set: node rank 0 all of it,
    the other pods their ``checkpoints/`` (each pod's output dir is its own: the shards of its
    ranks, e.g. DeepSpeed ZeRO's ``zero_pp_rank_<n>_*``, are only there), to the same keys."""
    uri = os.environ.get(OUTPUT_URI_ENV, "").strip()
    if not uri or not out_dir:
        return None
    rank = os.environ.get("NODE_RANK", "0").strip() or "0"
    if rank != "0":
        ckpts = Path(out_dir) / "checkpoints"
        if not ckpts.is_dir():
            log(f"node rank {rank}: no checkpoints of its own; rank 0 uploads the output")
            return None
        log(f"node rank {rank}: uploading its checkpoint shards; rank 0 uploads the rest")
        return upload_dir(ckpts, uri.rstrip("/") + "/checkpoints")
    return upload_dir(Path(out_dir), uri)


def _record(fetched: list[dict[str, Any]]) -> None:
    """Leave what was fetched in ``INTERNLM_FETCHED_DIR`` (on the inputs volume), for the
    stage's result."""
    where = os.environ.get(FETCHED_DIR_ENV, "").strip()
    if not where:
        return
    from .report import write_json_atomic

    for f in fetched:
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(f["name"]))
        try:
            write_json_atomic(Path(where) / f"{safe}.json", f)
        except OSError as e:  # best effort: the input itself is there
            log(f"cannot record what input {f['name']} fetched: {e}")


def fetched_records() -> list[dict[str, Any]]:
    """What the ``fetch-*`` init containers of this pod fetched (``INTERNLM_FETCHED_DIR``)."""
    where = os.environ.get(FETCHED_DIR_ENV, "").strip()
    if not where or not Path(where).is_dir():
        return []
    out = []
    for p in sorted(Path(where).glob("*.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def main() -> int:
    """``python -m internlm_workloads fetch``: fetch ``INTERNLM_INPUTS`` (what a
    ``fetch-<input>`` init container runs), result in the termination message."""
    from .report import write_termination

    try:
        fetched = fetch_all(inputs_from_env())
        _record(fetched)
    except StageError as e:
        write_termination({"ok": False, "reason": e.reason, **e.extra})
        return e.exit_code
    except Exception as e:  # a bug: still one line
        write_termination({"ok": False, "reason": one_line(f"{type(e).__name__}: {e}")})
        return 1
    write_termination({"ok": True, "fetched": fetched})
    return 0

"""A small Hugging Face Hub compatible server on loopback, serving repos the test writes.

It answers the routes huggingface_hub's ``snapshot_download`` uses (0.36 and 2.x), as the Hub
does, so the client's own code runs end to end through ``HF_ENDPOINT``:

- ``GET /api/{models|datasets}/{repo}[/revision/{rev}]``: repo info (``id``, ``sha``, ``siblings``
  with sizes);
- ``GET /api/{models|datasets}/{repo}/tree/{rev}[/{path}]``: the file listing (2.x);
- ``HEAD|GET /{repo}/resolve/{rev}/{file}`` and ``/datasets/{repo}/resolve/...``: the file,
  with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``; ``Range: bytes=N-`` answers 206.

Errors carry the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``); a private repo answers 401 without the server's token, as the Hub does.
``stall(file, n)`` makes the next full download of ``file`` stop after ``n`` bytes and hang (a
test kills the client meanwhile) or drop the connection, to check how downloads resume.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit
    commits: dict[str, dict[str, Path]] = field(default_factory=dict)  # commit -> files


@dataclass
class Stall:
    after: int
    hang: bool = True  # False: close the connection at once (a dropped connection)
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class Hub:
    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = root
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.stalls: dict[str, Stall] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- content -------------------------------------------------------------------------

    def add(
        self,
        repo_type: str,
        repo_id: str,
        files: dict[str, bytes],
        revision: str = "main",
        private: bool = False,
    ) -> str:
        """Commit ``files`` to ``repo_id`` as ``revision``; returns the commit id."""
        repo = self.repos.setdefault((repo_type, repo_id), Repo(repo_type, repo_id, private))
        repo.private = repo.private or private
        h = hashlib.sha1(f"{repo_type}/{repo_id}@{revision}".encode())
        for name in sorted(files):
            h.update(name.encode() + b"\0" + files[name])
        commit = h.hexdigest()
        base = self.root / repo_type / repo_id / commit
        paths = {}
        for name, data in files.items():
            p = base / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            paths[name] = p
        repo.commits[commit] = paths
        repo.refs[revision] = commit
        return commit

    def stall(self, filename: str, after: int, hang: bool = True) -> Stall:
        """The next full GET of ``filename`` sends ``after`` bytes, then hangs (until
        released) or, with ``hang=False``, drops the connection."""
        s = Stall(after, hang)
        self.stalls[filename] = s
        return s

    def seen(self, method: str, contains: str) -> list[dict[str, str]]:
        with self._lock:
            return [h for m, p, h in self.requests if m == method and contains in p]

    # -- server --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, host: str = "127.0.0.1") -> Hub:
        """Serve on ``host`` (loopback by default; the real-node tests use the node's own
        address, which its pods reach), on a free port."""
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for s in self.stalls.values():
            s.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _oid(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- replies -------------------------------------------------------------------------

    def _reply(
        self,
        code: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        ctype: str = "application/json",
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code: int, error_code: str, message: str) -> None:
        headers = {"X-Error-Code": error_code, "X-Error-Message": message}
        self._reply(code, json.dumps({"error": message}).encode(), headers)

    def _json(self, doc: Any) -> None:
        self._reply(200, json.dumps(doc).encode())

    # -- routing -------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        hub = self.hub
        path = urlsplit(self.path).path
        with hub._lock:
            hub.requests.append(
                (self.command, path, {k.lower(): v for k, v in self.headers.items()})
            )
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if (
            parts[:1] == ["api"]
            and len(parts) in (4, 6, 7, 8)
            and parts[1] in ("models", "datasets")
        ):
            if len(parts) == 4:  # repo info at the default branch
                parts += ["revision", "main"]
            repo_type = parts[1][:-1]
            repo_id = f"{parts[2]}/{parts[3]}"
            what, rev = parts[4], parts[5]
            repo = self._repo(repo_type, repo_id)
            if repo is None:
                return
            commit = self._commit(repo, rev)
            if commit is None:
                return
            files = repo.commits[commit]
            if what == "revision":
                self._json(
                    {
                        "id": repo_id,
                        "sha": commit,
                        "private": repo.private,
                        "siblings": [
                            {"rfilename": n, "size": p.stat().st_size, "blobId": _oid(p)}
                            for n, p in sorted(files.items())
                        ],
                    }
                )
            elif what == "tree":
                sub = "/".join(parts[6:])
                self._json(
                    [
                        {"type": "file", "oid": _oid(p), "size": p.stat().st_size, "path": n}
                        for n, p in sorted(files.items())
                        if not sub or n.startswith(sub.rstrip("/") + "/")
                    ]
                )
            else:
                self._error(404, "EntryNotFound", f"no route {path}")
            return
        repo_type = "model"
        if parts[:1] == ["datasets"]:
            repo_type, parts = "dataset", parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo(repo_type, f"{parts[0]}/{parts[1]}")
            if repo is None:
                return
            commit = self._commit(repo, parts[3])
            if commit is None:
                return
            name = "/".join(parts[4:])
            p = repo.commits[commit].get(name)
            if p is None:
                self._error(404, "EntryNotFound", f"{name} not found at {commit}")
                return
            self._file(name, p, commit)
            return
        self._error(404, "RepoNotFound", f"no route {path}")

    def _repo(self, repo_type: str, repo_id: str) -> Repo | None:
        hub = self.hub
        repo = hub.repos.get((repo_type, repo_id))
        auth = self.headers.get("Authorization", "")
        if repo is not None and repo.private:
            if not auth:
                # what the Hub answers without a token: as if it did not exist, but 401
                self._error(401, "RepoNotFound", "Repository not found")
                return None
            if auth != f"Bearer {hub.token}":
                self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                return None
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
        return repo

    def _commit(self, repo: Repo, rev: str) -> str | None:
        if rev in repo.commits:
            return rev
        commit = repo.refs.get(rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return commit

    def _file(self, name: str, p: Path, commit: str) -> None:
        data = p.read_bytes()
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{_oid(p)}"',
            "Accept-Ranges": "bytes",
        }
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes="):
            start = int(rng[len("bytes=") :].split("-")[0] or 0)
        if self.command == "HEAD":
            self._reply(200, data, headers, "application/octet-stream")
            return
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        stall = self.hub.stalls.get(name)
        if stall is not None and not start and not stall.reached.is_set():
            self.wfile.write(body[: stall.after])
            self.wfile.flush()
            stall.reached.set()
            if stall.hang:
                stall.release.wait(120)  # the client is killed meanwhile; then drop the line
            self.close_connection = True
            return
        self.wfile.write(body)


def wait_stalled(stall: Stall, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not stall.reached.wait(0.2):
        if time.monotonic() > deadline:
            raise TimeoutError("the download never reached the stall point")

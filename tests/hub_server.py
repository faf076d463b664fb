"""A small Hub-compatible HTTP endpoint on loopback, for real huggingface_hub round trips in tests.

It speaks the subset of the Hub API that snapshot_download, model_info, auth_check, whoami, create_repo and
upload_folder (one commit, files inlined as "regular" uploads) use. Repos live in memory; every commit gets a sha.
Tokens: "hf_write" may write anywhere, "hf_read" may only read. Repos can be marked gated.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

USER = "tester"
TOKENS = {"hf_write": "write", "hf_read": "read"}


class Repo:
    def __init__(self, private=False, gated=False):
        self.private, self.gated = private, gated
        self.commits: list[tuple[str, dict[str, bytes]]] = []
        self.branches: dict[str, str] = {}

    def commit(self, files: dict[str, bytes], branch="main") -> str:
        parent = self.branches.get(branch, "")
        digest = hashlib.sha1(parent.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha1(files[path]).digest())
        sha = digest.hexdigest()
        self.commits.append((sha, dict(files)))
        self.branches[branch] = sha
        return sha

    def files_at(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        sha = self.branches.get(revision, revision)
        for commit_sha, files in self.commits:
            if commit_sha == sha:
                return commit_sha, files
        return None


class HubState:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeHub/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    # helpers
    @property
    def state(self) -> HubState:
        return self.server.state

    def _token_role(self):
        auth = self.headers.get("Authorization", "")
        return TOKENS.get(auth.removeprefix("Bearer ").strip()) if auth else None

    def _send(self, status, body=b"", headers=None, content_type="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status, code, message):
        self._send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _repo(self, repo_id, write=False):
        repo = self.state.repos.get(repo_id)
        role = self._token_role()
        if repo is None or (repo.private and role is None):
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        if repo.gated and not write:
            # nobody here has accepted the licence: the real Hub answers 401 anonymously and 403 with a token
            self._error(401 if role is None else 403, "GatedRepo", f"Access to model {repo_id} is restricted")
            return None
        if write and role != "write":
            self._error(403, "Forbidden", "You don't have the rights to write to this repo")
            return None
        return repo

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # routing
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlparse(self.path)
        path = unquote(url.path)
        rng = self.headers.get("Range")
        self.state.requests.append(f"{self.command} {path}" + (f" range={rng}" if rng else ""))
        if path == "/api/whoami-v2":
            role = self._token_role()
            if role is None:
                return self._error(401, "Unauthorized", "Invalid user token.")
            return self._send(200, {"type": "user", "name": USER, "orgs": [],
                                    "auth": {"type": "access_token", "accessToken": {"displayName": "t", "role": role}}})
        if path.startswith("/api/models/"):
            return self._api_models_get(path[len("/api/models/"):], parse_qs(url.query))
        if "/resolve/" in path:
            return self._resolve(path)
        return self._error(404, "EntryNotFound", f"no route {path}")

    def _api_models_get(self, rest, query):
        for marker in ("/auth-check/write", "/auth-check", "/revision/", "/tree/"):
            if marker in rest:
                repo_id, _, tail = rest.partition(marker)
                break
        else:
            repo_id, marker, tail = rest, "", ""
        repo = self._repo(repo_id, write=marker == "/auth-check/write")
        if repo is None:
            return None
        if marker.startswith("/auth-check"):
            return self._send(200, {})
        if marker == "/tree/":
            revision, _, _sub = tail.partition("/")
            found = repo.files_at(revision)
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            _, files = found
            entries = []
            for p, data in sorted(files.items()):
                entry = {"type": "file", "path": p, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                if p.endswith(".safetensors"):
                    entry["lfs"] = {"oid": _etag(data), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            return self._send(200, entries)
        revision = tail or "main"
        found = repo.files_at(revision)
        if found is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        sha, files = found
        card = {}
        readme = files.get("README.md", b"").decode(errors="replace")
        if readme.startswith("---"):
            import yaml

            card = yaml.safe_load(readme.split("---", 2)[1]) or {}
        return self._send(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                                "cardData": card,
                                "gated": repo.gated, "disabled": False, "tags": [], "downloads": 0, "likes": 0,
                                "siblings": [{"rfilename": p} for p in sorted(files)],
                                "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z"})

    def _resolve(self, path):
        repo_id, _, tail = path.lstrip("/").partition("/resolve/")
        revision, _, filename = tail.partition("/")
        repo = self._repo(repo_id)
        if repo is None:
            return None
        found = repo.files_at(revision)
        if found is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        sha, files = found
        if filename not in files:
            return self._error(404, "EntryNotFound", f"{filename} does not exist at {revision}",)
        data = files[filename]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_etag(data)}"', "Accept-Ranges": "bytes"}
        if filename.endswith(".safetensors"):
            headers.update({"X-Linked-Etag": f'"{_etag(data)}"', "X-Linked-Size": str(len(data))})
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start, _, end = rng[6:].partition("-")
            start = int(start)
            end = int(end) if end else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start:end + 1], headers, "application/octet-stream")
        return self._send(200, data, headers, "application/octet-stream")

    def do_POST(self):
        url = urlparse(self.path)
        path = unquote(url.path)
        self.state.requests.append(f"POST {path}")
        body = self._body()
        if path == "/api/repos/create":
            if self._token_role() != "write":
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            payload = json.loads(body or b"{}")
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else (
                payload["name"] if "/" in payload["name"] else f"{USER}/{payload['name']}")
            with self.state.lock:
                if repo_id in self.state.repos:
                    return self._error(409, "RepoExists", "You already created this model repo")
                repo = Repo(private=bool(payload.get("private")))
                repo.commit({".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
                self.state.repos[repo_id] = repo
            return self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
        if path.startswith("/api/models/") and "/preupload/" in path:
            repo_id = path[len("/api/models/"):].partition("/preupload/")[0]
            if self._repo(repo_id, write=True) is None:
                return None
            files = json.loads(body)["files"]
            return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                               "oid": None} for f in files], "commitOid": None})
        if path.startswith("/api/models/") and "/commit/" in path:
            repo_id, _, revision = path[len("/api/models/"):].partition("/commit/")
            repo = self._repo(repo_id, write=True)
            if repo is None:
                return None
            return self._commit(repo_id, repo, revision, body)
        if path == "/api/validate-yaml":
            return self._send(200, {})
        return self._error(404, "EntryNotFound", f"no route {path}")

    def _commit(self, repo_id, repo, revision, body):
        with self.state.lock:
            found = repo.files_at(revision)
            files = dict(found[1]) if found else {}
            for line in body.splitlines():
                if not line.strip():
                    continue
                op = json.loads(line)
                key, value = op["key"], op["value"]
                if key == "file":
                    content = value["content"]
                    files[value["path"]] = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                elif key in ("deletedFile", "deletedFolder"):
                    prefix = value["path"]
                    for p in [p for p in files if p == prefix or p.startswith(prefix.rstrip("/") + "/")]:
                        del files[p]
                elif key == "lfsFile":
                    return self._error(400, "BadRequest", "this test hub accepts only regular uploads")
            sha = repo.commit(files, revision)
        return self._send(200, {"commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{sha}",
                                "commitOid": sha, "success": True})


class FakeHub:
    """Context manager: starts the server on a free loopback port; `.endpoint` is its base URL."""

    def __init__(self):
        self.state = HubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.state = self.state
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def add_repo(self, repo_id: str, folder, *, private=False, gated=False) -> str:
        """Publish every file of `folder` as one commit of `repo_id`; return the commit sha."""
        from pathlib import Path

        repo = self.state.repos.setdefault(repo_id, Repo(private=private, gated=gated))
        files = {str(p.relative_to(folder)): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}
        return repo.commit(files)

"""All network code: resolving a source (Hub repo id[@revision] or local folder) to a local snapshot."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import HfpruneError, HubError

# What a pruned checkpoint needs from the source repo, and what it never needs.
ALLOW_PATTERNS = ["*.safetensors", "*.json", "tokenizer*", "*.jinja", "*.txt", "LICENSE*", "USE_POLICY*", "NOTICE*"]
IGNORE_PATTERNS = ["original/*", "*.bin", "*.pth", "*.pt", "*.ckpt", "*.gguf", "*.onnx", "*.msgpack", "*.h5"]
PICKLE_PATTERNS = ["*.bin"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass(frozen=True)
class Source:
    """A resolved source: where its files are and, for Hub sources, exactly which commit they came from."""

    path: Path
    repo_id: str | None = None
    revision: str | None = None
    sha: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Source":
        """The inverse of to_dict (the pipeline's source.json)."""
        return cls(Path(d["path"]), d.get("repo_id"), d.get("revision"), d.get("sha"))

    def provenance(self) -> dict:
        """Where the files came from, without the local path (for hfprune.json and scores.json)."""
        return {"repo_id": self.repo_id, "revision": self.revision, "sha": self.sha}

    def identity(self) -> dict:
        """What makes results on this source reusable: the commit sha, or a local folder's config and weights."""
        import hashlib

        if self.sha:
            return {"sha": self.sha}
        return {"config": hashlib.sha256((self.path / "config.json").read_bytes()).hexdigest(),
                "weights": sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                  for p in self.path.glob("*.safetensors"))}


def parse_source(source: str) -> tuple[str, str | None]:
    """'org/name@rev' -> ('org/name', 'rev')."""
    repo_id, _, revision = source.partition("@")
    return repo_id, (revision or None)


def resolve_source(source: str, *, token: str | None = None, allow_pickle: bool = False,
                   endpoint: str | None = None) -> Source:
    """A local folder as is, or a Hub snapshot of only the files pruning needs, pinned to its commit sha."""
    local = Path(source).expanduser()
    if local.is_dir():
        return Source(local.resolve())
    repo_id, revision = parse_source(source)
    if not _REPO_ID.match(repo_id) or source.startswith((".", "/", "~")):
        raise HubError(f"SOURCE {source!r} is neither an existing folder nor a Hub repo id like org/name[@revision]")
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(repo_id, revision):
        info = api.model_info(repo_id, revision=revision, files_metadata=False)
        names = [s.rfilename for s in (info.siblings or [])]
        has_safetensors = any(n.endswith(".safetensors") for n in names)
        allow = list(ALLOW_PATTERNS) + (PICKLE_PATTERNS if allow_pickle and not has_safetensors else [])
        ignore = [p for p in IGNORE_PATTERNS if not (p in PICKLE_PATTERNS and p in allow)]
        path = snapshot_download(repo_id, revision=info.sha, allow_patterns=allow, ignore_patterns=ignore,
                                 token=token, endpoint=endpoint)
    return Source(Path(path), repo_id, revision, info.sha)


def remote_headers(source: str, *, token: str | None = None, endpoint: str | None = None):
    """For a Hub source: (Source with a snapshot of config.json only, [SafetensorsFile]) read through HTTP range
    requests on the safetensors headers, so a dry run downloads no weights. None for a local folder."""
    if Path(source).expanduser().is_dir():
        return None
    from huggingface_hub import HfApi, snapshot_download

    from .disk.safetensors_io import SafetensorsFile, TensorInfo

    repo_id, revision = parse_source(source)
    if not _REPO_ID.match(repo_id):
        return None
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    api = HfApi(endpoint=endpoint, token=token)
    quiet_before = are_progress_bars_disabled()
    disable_progress_bars()  # one small file: a bar would only break a one-line refusal that may follow
    try:
        with hub_errors(repo_id, revision):
            info = api.model_info(repo_id, revision=revision)
            path = snapshot_download(repo_id, revision=info.sha, allow_patterns=["config.json"], token=token,
                                     endpoint=endpoint)
            meta = api.get_safetensors_metadata(repo_id, revision=info.sha)
    finally:
        if not quiet_before:
            enable_progress_bars()
    files = []
    for name, fm in sorted(meta.files_metadata.items()):
        tensors = {t: TensorInfo(t, ti.dtype, tuple(ti.shape), ti.data_offsets[0], ti.data_offsets[1])
                   for t, ti in fm.tensors.items()}
        files.append(SafetensorsFile(Path(name), tensors, dict(fm.metadata or {})))
    return Source(Path(path), repo_id, revision, info.sha), files


class hub_errors:
    """Context manager turning huggingface_hub's exceptions into one-line HubErrors."""

    def __init__(self, repo_id: str, revision: str | None = None, write: bool = False):
        self.repo_id, self.revision, self.write = repo_id, revision, write

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, Exception):
            return False
        from huggingface_hub import errors as e

        repo = self.repo_id
        if isinstance(exc, e.GatedRepoError):  # subclasses RepositoryNotFoundError: test it first
            raise HubError(f"{repo} is gated: accept its licence on the Hub, then log in (hf auth login)") from None
        if isinstance(exc, e.RevisionNotFoundError):
            raise HubError(f"{repo} has no revision {self.revision!r}; check the branch, tag or commit") from None
        if isinstance(exc, e.RepositoryNotFoundError):
            raise HubError(f"{repo} was not found on the Hub (or it is private: log in with hf auth login)") from None
        if isinstance(exc, e.LocalEntryNotFoundError) or _is_connection_error(exc):
            raise HubError(f"cannot reach the Hub for {repo} (no network?); retry online or give a local folder") from None
        if isinstance(exc, e.HfHubHTTPError):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):
                what = "write to" if self.write else "read"
                raise HubError(f"your token cannot {what} {repo} (HTTP {status}); log in with a token that can") from None
            raise HubError(f"the Hub answered HTTP {status} for {repo}: {str(exc).splitlines()[0]}") from None
        return False


def _is_connection_error(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        if "Connect" in name or "Timeout" in name or isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


_REACHABLE: dict[str, bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint answers a TCP connection (probed once per process). HF_HUB_OFFLINE means no."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if endpoint not in _REACHABLE:
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            _REACHABLE[endpoint] = True
        except OSError:
            _REACHABLE[endpoint] = False
    return _REACHABLE[endpoint]


def offline_unless_reachable() -> bool:
    """When the Hub cannot be reached, switch this process to HF_HUB_OFFLINE semantics (cached data loads, missing
    data fails at once instead of after a minute of retries). Returns whether the Hub is reachable."""
    import os
    import sys

    if hub_reachable():
        return True
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module, attr in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE")):
        if module in sys.modules:
            setattr(sys.modules[module], attr, True)
    return False


# ---------------------------------------------------------------- publishing

def writable_repo(repo_id: str | None, token: str | None, default_repo_id) -> tuple[str, str]:
    """(repo id, token): the given repo id or default_repo_id(user name), checked writable with the token (the
    given one or the logged-in one) before any long work. A repo that does not exist yet passes when the token
    can create it."""
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise HubError("no Hub token: run `hf auth login`, set HF_TOKEN or pass --token (or use --no-push)")
    api = HfApi(token=token)
    with hub_errors("whoami"):
        who = api.whoami()
    if not repo_id:
        repo_id = default_repo_id(who["name"])
        from .settings import check_repo_id

        try:
            check_repo_id(repo_id, "the default repo id")
        except ValueError as e:
            raise HubError(f"{e}; give one with --repo-id") from None
    try:
        with hub_errors(repo_id, write=True):
            api.auth_check(repo_id, write=True)
    except HubError as e:
        if "was not found" not in str(e):
            raise
        role = ((who.get("auth") or {}).get("accessToken") or {}).get("role")
        if role == "read":
            raise HubError(f"your token is read-only; it cannot create {repo_id} (use a write token)") from None
    return repo_id, token


EVAL_RESULTS_DIR = ".eval_results"  # the Hub's evaluation-results folder: the one dot-path that is published


def upload_model_folder(folder: Path, repo_id: str, *, token: str | None, private: bool) -> dict:
    """Create `repo_id` if needed and upload `folder` in one commit; never pickles or hidden files, except the
    Hub's `.eval_results/`."""
    from huggingface_hub import HfApi

    hidden = [p.name for p in Path(folder).iterdir() if p.name.startswith(".") and p.name != EVAL_RESULTS_DIR]
    ignore = ["*.bin", "*.pth", "*.pt", "*/.*"] + [pattern for name in hidden for pattern in (name, f"{name}/*")]
    api = HfApi(token=token)
    with hub_errors(repo_id, write=True):
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload pruned model (hfprune)",
                                 ignore_patterns=ignore)
    return {"repo_id": repo_id, "commit": info.oid, "url": info.commit_url}


def source_license(src: Source, token: str | None) -> dict | None:
    """The base model's licence from its card metadata (local README.md, else the Hub's): {license, license_name,
    license_link} as the card states them; a bare `other` gets a name and a link to the base model so that a
    published card never says only `other`."""
    data = None
    try:
        from huggingface_hub import ModelCard

        readme = src.path / "README.md"
        if readme.is_file():
            data = ModelCard.load(readme).data.to_dict()
        elif src.repo_id:
            from huggingface_hub import HfApi

            info = HfApi(token=token).model_info(src.repo_id, revision=src.sha)
            data = info.card_data.to_dict() if info.card_data else None
    except (HfpruneError, OSError, ValueError):
        return None
    except Exception:  # noqa: BLE001 - a missing licence must never stop the pipeline
        return None
    if not data or not data.get("license"):
        return None
    out = {k: data.get(k) for k in ("license", "license_name", "license_link") if data.get(k)}
    if out["license"] == "other":
        base = src.repo_id or src.path.name
        out.setdefault("license_name", f"{base.split('/')[-1].lower()}-license")
        if src.repo_id:
            out.setdefault("license_link", f"https://huggingface.co/{src.repo_id}")
    return out

"""A tiny Hugging Face Hub, served on 127.0.0.1, for tests (standard library only).

It speaks just enough of the Hub's HTTP protocol for ``huggingface_hub``'s real client code (``create_repo``,
``create_branch``, ``upload_folder``/``upload_file``/``create_commit`` with LFS, ``model_info``, ``list_repo_tree``,
``get_paths_info``, ``hf_hub_download``, ``snapshot_download``, ``whoami``) and for diffusers' ``push_to_hub`` and
``from_pretrained``. Point the client at it with ``HF_ENDPOINT`` (see the ``hub_server`` fixture in conftest.py).

Only the protocol lives here: how one version of the client has to be configured to use it (and the routes that
client calls on its own) is in hub_client.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# Like the Hub's default .gitattributes: these files always go through LFS, whatever their size.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack", ".npy", ".npz", ".gguf")
_GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()
_TYPES = {None: "model", "models": "model", "datasets": "dataset", "spaces": "space"}  # URL part -> repo type
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}  # prefix of a repo's web and git URLs
_API = r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)"
_GIT = r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)"
_BAD_TOKEN = "Invalid credentials in Authorization header"  # the Hub's message, which the client checks for


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @cached_property
    def oid(self) -> str:
        """Git blob id: of the content for regular files, of the LFS pointer for LFS files (as git does)."""
        blob = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()


@dataclass
class Commit:
    sha: str
    message: str
    files: dict[str, StoredFile]
    parent: str | None = None
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """A revision is a branch name or a full commit sha."""
        return self.commits.get(self.branches.get(revision, revision))

    def commit(self, branch: str, message: str, files: dict[str, StoredFile]) -> Commit:
        parent = self.branches.get(branch)
        seed = json.dumps([parent, message, sorted((p, f.oid) for p, f in files.items()), time.time_ns()])
        new = Commit(hashlib.sha1(seed.encode()).hexdigest(), message, files, parent)
        self.commits[new.sha] = new
        self.branches[branch] = new.sha
        return new


class HubServer(ThreadingHTTPServer):
    """In-memory Hub: ``with HubServer() as hub: ...`` (or ``.start()``/``.stop()``), then use ``hub.endpoint``.

    - ``require_token``: if set, every request must send ``Authorization: Bearer <require_token>`` (else 401 with the
      Hub's "Invalid credentials" message). If ``None`` any token is accepted, but writes and private repos need one.
    - Files are uploaded as LFS when their name matches ``LFS_SUFFIXES`` or they are bigger than ``lfs_threshold``.
      No Xet transfer is ever offered (but see hub_client.py: the client must be told not to use Xet).
    - Failure injection: the next ``fail_lfs_uploads`` LFS PUTs fail. ``lfs_failure_status=None`` drops the connection
      half-way through the body (the client retries these, after 1 s, 2 s, ...); an int answers with that HTTP status
      (e.g. 400, which S3 sends for a stalled upload; the client retries 5xx but not 4xx).
    - ``fixed_answers``: paths answered with constant JSON before any token check (routes a client calls on
      its own, e.g. ``hub_client.FIXED_ANSWERS``); other paths the server does not know get a 404.
    - Inspection: ``repos``, ``files()``, ``lfs_objects`` (sha256 -> bytes), ``requests`` (``(method, path)`` log).
    """

    daemon_threads = True

    def __init__(
        self,
        port: int = 0,
        *,
        require_token: str | None = None,
        username: str = "user",
        lfs_threshold: int = 10 * 1024 * 1024,
        fixed_answers: dict[str, object] | None = None,
    ):
        super().__init__(("127.0.0.1", port), _Handler)
        self.require_token, self.username, self.lfs_threshold = require_token, username, lfs_threshold
        self.fixed_answers = dict(fixed_answers or {})
        self.repos: dict[tuple[str, str], Repo] = {}  # (repo type, repo id) -> Repo
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_lfs_uploads = 0
        self.lfs_failure_status: int | None = None
        self.lock = threading.RLock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> HubServer:
        threading.Thread(target=self.serve_forever, args=(0.05,), name="hub-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, StoredFile]:
        """The files of a repo at a revision (KeyError if either is unknown)."""
        commit = self.repos[(repo_type, repo_id)].resolve(revision)
        if commit is None:
            raise KeyError(revision)
        return commit.files


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: Commit | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class _Handler(BaseHTTPRequestHandler):
    server: HubServer
    ROUTES = (  # (methods, path regex, handler); the handler gets the regex groups, url-unquoted
        ("GET", r"^/api/whoami-v2$", "whoami"),
        ("POST", r"^/api/repos/create$", "create_repo"),
        ("DELETE", r"^/api/repos/delete$", "delete_repo"),
        ("POST", r"^/api/validate-yaml$", "validate_yaml"),
        ("GET", rf"{_API}(?:/revision/([^/]+))?$", "repo_info"),
        ("GET", rf"{_API}/tree/([^/]+)(?:/(.+))?$", "tree"),
        ("POST", rf"{_API}/paths-info/([^/]+)$", "paths_info"),
        ("POST", rf"{_API}/branch/([^/]+)$", "create_branch"),
        ("POST", rf"{_API}/preupload/([^/]+)$", "preupload"),
        ("POST", rf"{_API}/commit/([^/]+)$", "commit"),
        ("POST", rf"{_GIT}\.git/info/lfs/objects/batch$", "lfs_batch"),
        ("POST", rf"{_GIT}\.git/info/lfs/objects/verify$", "lfs_verify"),
        ("HEAD GET", rf"{_GIT}/resolve/([^/]+)/(.+)$", "resolve"),
    )

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.server.requests.append((self.command, url.path))
        try:
            # Plays the presigned S3 URL of the real Hub: the client sends no Authorization header there.
            if self.command == "PUT" and (m := re.match(r"^/lfs-upload/([0-9a-f]{64})$", url.path)):
                return self.lfs_upload(m.group(1))
            self.body = self._read_body()  # before any answer: else the client may see a reset instead of our error
            if url.path in self.server.fixed_answers:
                return self._json(self.server.fixed_answers[url.path])
            auth = self.headers.get("Authorization", "")
            self.token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            if self.server.require_token is not None and self.token != self.server.require_token:
                raise HubError(401, _BAD_TOKEN)
            for methods, pattern, name in self.ROUTES:
                if self.command in methods.split() and (m := re.match(pattern, url.path)):
                    with self.server.lock:
                        return getattr(self, name)(*(g and unquote(g) for g in m.groups()))
            raise HubError(404, f"{self.command} {url.path} is not implemented by the test Hub server")
        except HubError as e:
            headers = {"X-Error-Message": e.message.encode("ascii", "replace").decode()}  # headers are latin-1
            if e.code:
                headers["X-Error-Code"] = e.code
            if e.commit:  # lets the client cache "this file does not exist at this commit"
                headers["X-Repo-Commit"] = e.commit.sha
            self._json({"error": e.message}, e.status, headers)
        except ConnectionError:  # the client went away: nobody to answer
            self.close_connection = True
        except Exception as e:  # a bug here: 400, not 5xx, so that the client fails at once instead of retrying
            self._json({"error": f"test Hub server failed on {self.command} {url.path}: {e!r}"}, 400)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _read_body(self) -> bytes:  # the client always sends a Content-Length (never a chunked body)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype: str = "application/json"):
        self.send_response(status)
        for key, value in {"Content-Type": ctype, "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _repo(self, kind: str | None, repo_id: str, write: bool = False) -> Repo:
        if write and self.token is None:
            raise HubError(401, _BAD_TOKEN)
        repo = self.server.repos.get((_TYPES.get(kind, kind), repo_id))
        if repo is None or (repo.private and self.token is None):
            # Like the Hub: without a token, a private repo looks like a missing one.
            raise HubError(401 if self.token is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str | None, branch_only: bool = False) -> Commit:
        commit = repo.resolve(revision or "main")
        if commit is None or (branch_only and revision not in repo.branches):
            raise HubError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
        return commit

    def _entry(self, path: str, f: StoredFile | None) -> dict:
        if f is None:  # a folder; its oid only needs to be stable
            return {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()}
        entry = {"type": "file", "path": path, "size": len(f.data), "oid": f.oid}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": len(f.pointer)}
        return entry

    # ---- account and repos ----

    def whoami(self) -> None:
        if self.token is None:
            raise HubError(401, _BAD_TOKEN)
        name = self.server.username
        self._json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": name,
                "fullname": name,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        )

    def create_repo(self) -> None:
        if self.token is None:
            raise HubError(401, _BAD_TOKEN)
        payload = json.loads(self.body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.server.username}/{payload['name']}"
        url = f"{self.server.endpoint}/{_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.server.repos:
            return self._json({"error": "You already created this repo", "url": url}, 409)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))  # new, old clients
        repo = self.server.repos[(repo_type, repo_id)] = Repo(repo_id, repo_type, private)
        repo.commit("main", "initial commit", {".gitattributes": StoredFile(_GITATTRIBUTES, lfs=False)})
        self._json({"url": url, "name": repo_id})

    def delete_repo(self) -> None:
        payload = json.loads(self.body)
        repo_id = f"{payload.get('organization') or self.server.username}/{payload['name']}"
        repo = self._repo(payload.get("type") or "model", repo_id, write=True)
        del self.server.repos[(repo.repo_type, repo_id)]
        self._json({})

    def validate_yaml(self) -> None:  # the client has a README.md's metadata checked before committing it
        self._json({"errors": [], "warnings": []})

    def repo_info(self, kind: str, repo_id: str, revision: str | None) -> None:
        repo = self._repo(kind, repo_id)
        commit = self._commit(repo, revision)
        siblings = []
        for path, f in sorted(commit.files.items()):
            siblings.append({"rfilename": path})
            if self.query.get("blobs", "").lower() in ("1", "true"):  # files_metadata=True
                siblings[-1].update(size=len(f.data), blobId=f.oid)
                if f.lfs:
                    siblings[-1]["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": len(f.pointer)}
        self._json(
            {
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.sha,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "lastModified": commit.date,
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "siblings": siblings,
            }
        )

    def tree(self, kind: str, repo_id: str, revision: str, folder: str | None) -> None:
        commit = self._commit(self._repo(kind, repo_id), revision)
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        prefix = f"{folder.strip('/')}/" if folder else ""
        if folder and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"Folder {folder} not found", "EntryNotFound", commit)
        entries: dict[str, StoredFile | None] = {}
        for path, f in commit.files.items():
            if path.startswith(prefix):
                parts = path[len(prefix) :].split("/")
                for depth in range(1, len(parts) if recursive else min(2, len(parts))):  # the folders on the way
                    entries[prefix + "/".join(parts[:depth])] = None
                if recursive or len(parts) == 1:
                    entries[path] = f
        self._json([self._entry(p, f) for p, f in sorted(entries.items())])  # one page: no "Link: next" header

    def paths_info(self, kind: str, repo_id: str, revision: str) -> None:
        commit = self._commit(self._repo(kind, repo_id), revision)
        result = []
        for path in parse_qs(self.body.decode()).get("paths", []):  # a form, with one "paths" field per path
            path = path.strip("/")
            if path in commit.files or any(p.startswith(path + "/") for p in commit.files):
                result.append(self._entry(path, commit.files.get(path)))
        self._json(result)

    def create_branch(self, kind: str, repo_id: str, branch: str) -> None:
        repo = self._repo(kind, repo_id, write=True)
        start = self._commit(repo, json.loads(self.body or b"{}").get("startingPoint"))
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        repo.branches[branch] = start.sha
        self._json({})

    # ---- uploads: preupload -> LFS batch -> PUT -> verify -> commit ----

    def preupload(self, kind: str, repo_id: str, revision: str) -> None:
        repo = self._repo(kind, repo_id, write=True)
        current = self._commit(repo, revision, branch_only=True).files
        answer = []
        for file in json.loads(self.body)["files"]:
            lfs = file["path"].endswith(LFS_SUFFIXES) or file["size"] > self.server.lfs_threshold
            remote = current.get(file["path"])
            # The client skips unchanged files by comparing this oid with the sha256 (LFS) or git sha1 (regular).
            oid = remote and (remote.sha256 if lfs else remote.oid)
            answer.append(
                {"path": file["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        self._json({"files": answer})

    def lfs_batch(self, kind: str | None, repo_id: str) -> None:
        repo = self._repo(kind, repo_id, write=True)
        verify = f"{self.server.endpoint}/{_PREFIX[repo.repo_type]}{repo_id}.git/info/lfs/objects/verify"
        objects = []
        for obj in json.loads(self.body)["objects"]:
            objects.append({"oid": obj["oid"], "size": obj["size"], "authenticated": True})
            if obj["oid"] not in self.server.lfs_objects:  # no "actions" means: already uploaded, skip it
                objects[-1]["actions"] = {
                    "upload": {"href": f"{self.server.endpoint}/lfs-upload/{obj['oid']}"},
                    "verify": {"href": verify},
                }
        # Always "basic" (one PUT per file), though the client also offers "multipart".
        self._send(
            200, json.dumps({"transfer": "basic", "objects": objects}).encode(), ctype="application/vnd.git-lfs+json"
        )

    def lfs_upload(self, oid: str) -> None:
        with self.server.lock:
            fail = self.server.fail_lfs_uploads > 0
            if fail:
                self.server.fail_lfs_uploads -= 1
        if fail and self.server.lfs_failure_status is None:  # a network cut: part of the body, then no answer
            self.rfile.read(min(int(self.headers.get("Content-Length") or 0) // 2, 64 * 1024))
            self.close_connection = True
            return
        body = self._read_body()
        if fail:
            raise HubError(self.server.lfs_failure_status, "Injected LFS upload failure (test Hub server)")
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match sha256 {oid}")
        with self.server.lock:
            self.server.lfs_objects[oid] = body
        self._send(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def lfs_verify(self, kind: str | None, repo_id: str) -> None:
        self._repo(kind, repo_id, write=True)
        if json.loads(self.body)["oid"] not in self.server.lfs_objects:
            raise HubError(404, "LFS object not found")
        self._json({"success": True})

    def commit(self, kind: str, repo_id: str, revision: str) -> None:
        repo = self._repo(kind, repo_id, write=True)
        if self.query.get("create_pr"):
            raise HubError(400, "create_pr is not supported by the test Hub server")
        files, message = dict(self._commit(repo, revision, branch_only=True).files), ""
        for item in map(json.loads, filter(str.strip, self.body.decode().splitlines())):  # ndjson
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
                if value.get("parentCommit") not in (None, repo.branches[revision]):
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
            elif key == "file":
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                if value["oid"] not in self.server.lfs_objects:
                    raise HubError(422, f"LFS file {value['path']} was not uploaded")
                files[value["path"]] = StoredFile(self.server.lfs_objects[value["oid"]], lfs=True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: f for p, f in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise HubError(400, f"Unknown commit operation: {key}")
        new = repo.commit(revision, message, files)
        url = f"{self.server.endpoint}/{_PREFIX[repo.repo_type]}{repo_id}/commit/{new.sha}"
        self._json({"success": True, "commitOid": new.sha, "commitUrl": url, "pullRequestUrl": None})

    # ---- downloads ----

    def resolve(self, kind: str | None, repo_id: str, revision: str, path: str) -> None:
        commit = self._commit(self._repo(kind, repo_id), revision)
        f = commit.files.get(path)
        if f is None:
            raise HubError(404, f"Entry {path} not found", "EntryNotFound", commit)
        # The client names cache blobs after the ETag: the sha256 for LFS files, the git blob id otherwise.
        etag = f'"{f.sha256 if f.lfs else f.oid}"'
        headers = {"X-Repo-Commit": commit.sha, "ETag": etag, "Accept-Ranges": "bytes"}
        if f.lfs:  # what the Hub sends with its redirect to the CDN (served directly here)
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(len(f.data))})
        data, status = f.data, 200
        if m := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):  # to resume a download
            start, end = int(m.group(1)), int(m.group(2) or len(f.data) - 1)
            data, status = f.data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{len(f.data)}"
        self._send(status, data, headers, ctype="application/octet-stream")

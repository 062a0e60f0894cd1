"""A stand-in for the Hugging Face hub on 127.0.0.1: the routes ``huggingface_hub`` uses to download and upload.

Downloads: HEAD/GET ``/datasets/<repo>/resolve/<revision>/<file>`` with ETag, X-Repo-Commit,
Content-Length and byte ranges, like the real hub. Two faults can be armed per file: ``drop_once``
sends three quarters of the body and closes the connection; ``corrupt_once`` serves a same-size file
with a broken header.

Uploads (model repositories): ``/api/repos/create``, ``/api/models/<repo>`` (repo info),
``/api/validate-yaml``, ``/api/models/<repo>/preupload/<rev>`` (every file "regular": no LFS) and
``/api/models/<repo>/commit/<rev>`` (the NDJSON commit with base64 contents). Tokens are checked:
``tokens`` maps a token to its user, who may write only under their own name; ``models`` holds the
model repositories and their files (``bob/taken`` exists from the start).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<name>[^?]+)")
MODEL_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/?]+)(?:/(?P<action>preupload|commit|revision)/[^?]+)?")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_stub_token_of_alice"


class StubHub:
    def __init__(self, files: dict[str, bytes], repo: str = "kjj0/fineweb10B-gpt2"):
        self.files, self.repo = files, repo
        self.drop_once: set[str] = set()
        self.corrupt_once: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, file, Range header)
        self.tokens = {TOKEN: "alice"}
        self.models: dict[str, dict[str, bytes]] = {"bob/taken": {"README.md": b"bob's model\n"}}
        self.private: dict[str, bool] = {"bob/taken": False}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: dict | None = None, error_code: str | None = None) -> None:
                data = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _user(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                return hub.tokens.get(auth.removeprefix("Bearer "))

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def _serve(self, with_body: bool) -> None:
                match = ROUTE.match(self.path)
                model = MODEL_API.match(self.path)
                if model and self.command == "GET":
                    repo = model["repo"]
                    if repo not in hub.models:
                        return self._reply(404, {"error": "Repository not found"}, "RepoNotFound")
                    return self._reply(200, {"id": repo, "sha": COMMIT, "private": hub.private[repo],
                                             "siblings": [{"rfilename": name} for name in hub.models[repo]]})
                name = match["name"] if match else None
                hub.requests.append((self.command, name, self.headers.get("Range")))
                if not match or match["repo"] != hub.repo or name not in hub.files:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = hub.files[name]
                if with_body and name in hub.corrupt_once:
                    hub.corrupt_once.discard(name)
                    body = b"\0" * 8 + body[8:]
                start = 0
                ranged = self.headers.get("Range")
                if ranged:
                    start = int(re.match(r"bytes=(\d+)-", ranged)[1])
                self.send_response(206 if ranged else 200)
                self.send_header("ETag", '"' + hashlib.sha256(hub.files[name]).hexdigest() + '"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body) - start))
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if not with_body:
                    return
                if name in hub.drop_once and not ranged:
                    hub.drop_once.discard(name)
                    self.wfile.write(body[: len(body) * 3 // 4])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body[start:])

            def do_HEAD(self) -> None:
                self._serve(with_body=False)

            def do_GET(self) -> None:
                self._serve(with_body=True)

            def do_POST(self) -> None:
                body, user = self._body(), self._user()
                if self.path.startswith("/api/validate-yaml"):
                    return self._reply(200, {"errors": [], "warnings": []})
                if user is None:
                    return self._reply(401, {"error": "Invalid credentials in Authorization header"})
                if self.path.startswith("/api/repos/create"):
                    request = json.loads(body)
                    owner = request.get("organization") or user
                    repo = f"{owner}/{request['name']}"
                    if owner != user:
                        return self._reply(403, {"error": f"You don't have the rights to create a model under the "
                                                          f"namespace \"{owner}\""})
                    if repo in hub.models:
                        return self._reply(409, {"error": "You already created this model repo", "url": repo})
                    hub.models[repo] = {}
                    hub.private[repo] = request.get("visibility") == "private" or bool(request.get("private"))
                    return self._reply(200, {"url": f"{hub.url}/{repo}"})
                model = MODEL_API.match(self.path)
                if not model or model["repo"] not in hub.models:
                    return self._reply(404, {"error": "Repository not found"}, "RepoNotFound")
                repo = model["repo"]
                if repo.split("/")[0] != user:
                    return self._reply(403, {"error": "You don't have the rights to write to this repo"})
                if model["action"] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False, "oid": None} for f in files]})
                for line in body.splitlines():
                    entry = json.loads(line)
                    if entry["key"] == "file":
                        hub.models[repo][entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
                return self._reply(200, {"commitUrl": f"{hub.url}/{repo}/commit/{COMMIT}", "commitOid": COMMIT,
                                         "pullRequestUrl": None})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gets(self, name: str) -> list[str | None]:
        """The Range header of each GET of ``name``."""
        return [r for method, n, r in self.requests if method == "GET" and n == name]

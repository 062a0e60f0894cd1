"""A stand-in for the Hugging Face hub on 127.0.0.1: the few routes ``hf_hub_download`` uses.

HEAD/GET ``/datasets/<repo>/resolve/<revision>/<file>`` with ETag, X-Repo-Commit, Content-Length
and byte ranges, like the real hub. Two faults can be armed per file: ``drop_once`` sends three quarters
of the body and closes the connection; ``corrupt_once`` serves a same-size file with a broken header.
"""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<name>[^?]+)")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class StubHub:
    def __init__(self, files: dict[str, bytes], repo: str = "kjj0/fineweb10B-gpt2"):
        self.files, self.repo = files, repo
        self.drop_once: set[str] = set()
        self.corrupt_once: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, file, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _serve(self, with_body: bool) -> None:
                match = ROUTE.match(self.path)
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

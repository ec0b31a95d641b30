"""A static file server on 127.0.0.1 standing in for the Hub: ranged GETs, a request log, faults.

Serves a directory over HTTP/1.1 like a CDN does: ``HEAD`` gives ``Content-Length``, ``GET`` honours
one ``Range: bytes=a-b`` (206), a directory answers an HTML list of absolute links (what fsspec's
HTTP filesystem globs). Every request is logged as ``Request(method, path, start, end)`` with the
byte range actually sent (``end`` exclusive), so a test can assert which files and bytes a packer
fetched. ``fail_ranged[path] = n`` answers the next ``n`` ranged GETs of ``path`` with 503.

With ``repo_id``, it also answers the few Hub API routes huggingface_hub's ``HfFileSystem`` uses
to read a dataset repo (``endpoint=url``): repo info, tree listing, paths-info, and
``/datasets/<repo_id>/resolve/<rev>/<path>`` (served and logged like ``<path>``).
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    start: int
    end: int


class HubServer:
    """Serve ``root`` on a free loopback port until ``stop()``; ``url`` is its base URL (no slash)."""

    def __init__(self, root: Path, repo_id: str | None = None) -> None:
        self.root, self.repo_id = Path(root), repo_id
        self.log: list[Request] = []
        self.fail_ranged: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def do_POST(self) -> None:  # paths-info: form field ``paths``, repeated
                n = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(n).decode())
                entries = [server._entry(p.strip("/")) for p in form.get("paths", [])]
                self._send(200, json.dumps([e for e in entries if e]).encode(), "application/json", True)

            def _serve(self, body: bool) -> None:
                url = urlsplit(self.path)
                rel = unquote(url.path).lstrip("/")
                if server.repo_id:
                    api = f"api/datasets/{server.repo_id}"
                    if rel == api or rel.startswith(f"{api}/revision/"):
                        info = {"id": server.repo_id, "sha": "0" * 40, "private": False, "siblings": []}
                        self._send(200, json.dumps(info).encode(), "application/json", body)
                        return
                    if rel.startswith(f"{api}/tree/"):
                        sub = rel[len(f"{api}/tree/"):].partition("/")[2].strip("/")
                        deep = parse_qs(url.query).get("recursive", ["false"])[0].lower() in ("1", "true")
                        self._send(200, json.dumps(server._tree(sub, deep)).encode(), "application/json", body)
                        return
                    prefix = f"datasets/{server.repo_id}/resolve/"
                    if rel.startswith(prefix):
                        rel = rel[len(prefix):].partition("/")[2]
                local = server.root / rel
                if local.is_dir():
                    self._send(200, self._listing(rel).encode(), "text/html", body)
                    return
                if not local.is_file():
                    self._send(404, b"not found", "text/plain", body)
                    return
                size = local.stat().st_size
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                start, end = (int(m[1]), min(int(m[2]) + 1 if m[2] else size, size)) if m else (0, size)
                with server._lock:
                    if m and body and server.fail_ranged.get(rel, 0) > 0:
                        server.fail_ranged[rel] -= 1
                        failed = True
                    else:
                        failed = False
                        server.log.append(Request(self.command, rel, start, end if body else start))
                if failed:
                    self._send(503, b"slow down", "text/plain", body)
                    return
                with open(local, "rb") as f:
                    f.seek(start)
                    data = f.read(max(end - start, 0))
                self.send_response(206 if m else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data)))
                if m:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _listing(self, rel: str) -> str:
                d = server.root / rel
                links = [f"/{rel.strip('/')}/{p.name}{'/' if p.is_dir() else ''}".replace("//", "/")
                         for p in sorted(d.iterdir())]
                return "<html><body>" + "".join(f'<a href="{html.escape(u)}">{html.escape(u)}</a>\n' for u in links) + \
                    "</body></html>"

            def _send(self, code: int, data: bytes, ctype: str, body: bool) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:  # clients closing early: not news
                pass

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _entry(self, rel: str) -> dict | None:
        """A Hub tree entry for ``rel`` (relative to the root), None if it does not exist."""
        p = self.root / rel
        if p.is_file():
            return {"type": "file", "path": rel, "size": p.stat().st_size, "oid": f"{p.stat().st_size:040x}"}
        return {"type": "directory", "path": rel, "oid": "0" * 40} if p.is_dir() else None

    def _tree(self, rel: str, recursive: bool) -> list[dict]:
        base = self.root / rel
        found = base.rglob("*") if recursive else base.iterdir()
        return [self._entry(str(p.relative_to(self.root))) for p in sorted(found)]

    def fetched(self, path: str) -> int:
        """Body bytes served for ``path`` (relative to the root), over all GETs."""
        return sum(r.end - r.start for r in self.log if r.path == path and r.method == "GET")

    def files_fetched(self) -> set[str]:
        """Files (not directories) any GET fetched body bytes of."""
        return {r.path for r in self.log if r.method == "GET" and r.end > r.start and (self.root / r.path).is_file()}

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def tree(root: Path) -> set[str]:
    """Relative paths of all files under ``root``."""
    return {str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file() and not os.path.islink(p)}

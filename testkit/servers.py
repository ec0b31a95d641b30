"""Real servers on loopback for tests and benchmarks: an S3 API (moto) and a fault-injecting proxy.

``S3Server`` runs ``python -m moto.server`` as a subprocess on 127.0.0.1 (a free port), so clients
talk real HTTP to a real S3 implementation. ``FaultProxy`` sits between a client and that server,
relaying HTTP/1.1 requests one by one, and for a fraction of ``GET`` requests (deterministic by
seed, at most ``max_faults`` in all, and at most ``max_in_a_row`` in a row for one ``Range`` of one
path) answers ``503 SlowDown`` or sends half the body and resets the connection (TCP RST); it can
add a fixed latency to every request and counts the body bytes it relays (what a client really
fetched). Every wait here is bounded in time.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY, SECRET, REGION = "testing", "testing", "us-east-1"
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_options(endpoint_url: str, client_retries: bool = False) -> dict:
    """s3fs ``storage_options`` for a loopback server; without ``client_retries`` botocore tries
    once (s3fs's own retry count is the class attribute ``S3FileSystem.retries``, default 5)."""
    opts: dict = {"endpoint_url": endpoint_url, "key": KEY, "secret": SECRET,
                  "client_kwargs": {"region_name": REGION}, "skip_instance_cache": True}
    if not client_retries:
        opts["config_kwargs"] = {"retries": {"total_max_attempts": 1}, "connect_timeout": 5, "read_timeout": 10}
    return opts


class S3Server:
    """``python -m moto.server`` on 127.0.0.1; ``endpoint_url`` once started."""

    def __init__(self, start_timeout_s: float = 30.0) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}: pip install 'moto[server]'")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not listen on {self.endpoint_url} within {start_timeout_s} s")

    def make_bucket(self, name: str) -> str:
        import s3fs

        fs = s3fs.S3FileSystem(**s3_options(self.endpoint_url, client_retries=True))
        fs.call_s3("create_bucket", Bucket=name)  # us-east-1 takes no LocationConstraint
        return name

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Faults:
    """What the proxy does to ``GET`` requests: fractions in [0, 1], seconds, and bounds."""

    reset: float = 0.0  # send half the body, then reset the connection
    slowdown: float = 0.0  # answer 503 SlowDown
    latency_s: float = 0.0  # added before every request (any method) is forwarded
    seed: int = 0
    max_faults: int = 200
    max_in_a_row: int = 0  # faults one path's one Range may get in a row before one goes through; 0: no bound
    fail_path: str | None = None  # every GET whose path contains this gets 503 (unbounded)


class FaultProxy:
    """HTTP proxy on 127.0.0.1 to ``upstream`` (``host:port``), injecting ``faults``."""

    def __init__(self, upstream_port: int, faults: Faults = Faults()) -> None:
        self.upstream_port = upstream_port
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()
        self._in_a_row: dict[tuple[str, str], int] = {}  # (path, Range) -> faults in a row
        self.counts = {"requests": 0, "get": 0, "reset": 0, "slowdown": 0, "body_bytes": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _relay(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def _decide(self, method: str, path: str, range_header: str) -> str:
        with self._lock:
            self.counts["requests"] += 1
            if method != "GET":
                return "ok"
            self.counts["get"] += 1
            if self.faults.fail_path and self.faults.fail_path in path:
                self.counts["slowdown"] += 1
                return "slowdown"
            draw = self._rng.random()
            key = (path, range_header)
            in_a_row = self._in_a_row.pop(key, 0)
            if self.counts["reset"] + self.counts["slowdown"] >= self.faults.max_faults:
                return "ok"
            if self.faults.max_in_a_row and in_a_row >= self.faults.max_in_a_row:
                return "ok"
            decision = ("reset" if draw < self.faults.reset
                        else "slowdown" if draw < self.faults.reset + self.faults.slowdown else "ok")
            if decision != "ok":
                self.counts[decision] += 1
                self._in_a_row[key] = in_a_row + 1
            return decision

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        decision = self._decide(h.command, h.path, h.headers.get("Range", ""))
        if self.faults.latency_s:
            time.sleep(self.faults.latency_s)
        if decision == "slowdown":
            h.send_response(503, "Slow Down")
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(SLOWDOWN_BODY)))
            h.end_headers()
            h.wfile.write(SLOWDOWN_BODY)
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
            if body is not None:
                headers["Content-Length"] = str(len(body))
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            h.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP:
                    h.send_header(k, v)
            h.send_header("Content-Length", resp.getheader("Content-Length") if h.command == "HEAD" else str(len(data)))
            h.end_headers()
        finally:
            conn.close()
        if h.command == "HEAD":
            return
        if decision == "reset":
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            with self._lock:
                self.counts["body_bytes"] += len(data) // 2
            return
        h.wfile.write(data)
        with self._lock:
            self.counts["body_bytes"] += len(data)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

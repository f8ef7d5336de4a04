"""The threaded HTTP server and the ``Emulator`` that runs it.

``App.handle(Request) -> Response`` is the whole service without a socket: route, authenticate,
admit (quota and faults), call the handler, render errors, count, wait out the latency. The
HTTP layer only parses and writes. It speaks HTTP/1.1 keep-alive with Nagle disabled and writes
each response (status line, headers and body) in ONE ``send``: with headers and body in two
segments, Nagle and delayed ACKs make every call wait ~40 ms instead of ~1 ms.

``Emulator.stop()`` also closes the open keep-alive connections, so clients really see the
emulator go away; ``start()`` again binds the same port and keeps the state. With a
``state_dir`` the state also survives a new process (``persist.py``).
"""

from __future__ import annotations

import http
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from objlib.emulator import routes
from objlib.emulator.behaviour import Behaviour
from objlib.emulator.handlers import Request, Response
from objlib.emulator.persist import StateDir
from objlib.emulator.state import DEFAULT_STORAGE_LIMIT_BYTES, ApiError, State, key_not_valid

log = logging.getLogger(__name__)


class App:
    """The emulated service: state + behaviour + the route table, without any socket."""

    def __init__(self, state: State, behaviour: Behaviour):
        self.state = state
        self.behaviour = behaviour

    def handle(self, req: Request) -> Response:
        route, params = routes.resolve(req.method, req.path, req.query)
        if route.kind == "admin":
            return route.handler(self, req, **params)
        self.behaviour.arrive(call=route.kind == "api")
        try:
            if route.kind == "api":
                _authenticate(req, self.behaviour)
                self.behaviour.admit()
            resp = route.handler(self, req, **params)
        except ApiError as exc:
            resp = Response(exc.http_code, exc.to_api(), dict(exc.headers))
        except Exception as exc:  # a bug here must still answer like the service would
            log.exception("emulator handler failed: %s %s", req.method, req.path)
            resp = Response(500, ApiError(500, "INTERNAL", f"Internal error: {exc}").to_api())
        if route.kind == "chunk":
            resp.headers.setdefault("X-Goog-Upload-Status", "final")
        self.behaviour.record(route.endpoint, resp.status)
        delay_s = self.behaviour.delay_s("call") if resp.delay_s is None else resp.delay_s
        if delay_s > 0:
            time.sleep(delay_s)
        return resp

    def stats(self) -> dict:
        return {**self.behaviour.stats(), "stores": self.state.stores_report()}

    def reset(self) -> None:
        self.state.reset()
        self.behaviour.reset()


def _authenticate(req: Request, behaviour: Behaviour) -> None:
    key = req.header("x-goog-api-key") or req.query.get("key")
    if not key:
        raise ApiError(403, "PERMISSION_DENIED",
                       "API key not valid. Please pass a valid API key.")
    if not behaviour.key_valid(key):
        raise key_not_valid()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "objlib-gemini-emulator"

    def setup(self):
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):   # trailers
                pass
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self):
        body = self._body()
        target = urlsplit(self.path)
        address, port = self.server.server_address[:2]
        host = self.headers.get("Host") or f"{address}:{port}"
        req = Request(self.command, unquote(target.path),
                      dict(parse_qsl(target.query, keep_blank_values=True)),
                      {k.lower(): v for k, v in self.headers.items()}, body, f"http://{host}")
        self._write(self.server.app.handle(req))

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

    def _write(self, resp: Response) -> None:
        if resp.events is not None:  # server-sent events: "data: {json}" and a blank line
            payload = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n"
                               for e in resp.events)
            content_type = "text/event-stream"
        else:
            payload = b"" if resp.body is None else json.dumps(resp.body).encode()
            content_type = "application/json; charset=UTF-8"
        phrase = http.HTTPStatus(resp.status).phrase
        headers = {"Content-Type": content_type,
                   "Content-Length": str(len(payload)), **resp.headers}
        if self.close_connection:
            headers["Connection"] = "close"
        head = f"HTTP/1.1 {resp.status} {phrase}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.wfile.write(head.encode("latin-1") + payload)   # one write: see the module doc

    def log_message(self, format, *args):  # quiet: the statistics tell what happened
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, app: App):
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def close_connections(self) -> None:
        with self._connections_lock:
            conns, self._connections = self._connections, set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):  # a client that hung up: not news
        pass


class Emulator:
    """The emulator on a background thread; a context manager.

    ``api_keys``: when given, only these keys are valid (others get the real API's 400
    API_KEY_INVALID). ``storage_limit_bytes``: the project's File Search storage (3 x the
    input of its documents; 0 or None: unlimited). ``state_dir``: keep the state there
    across restarts (loaded now; ValueError if what is there is not a saved state).

    >>> with Emulator(profile="instant", seed=1) as emu:
    ...     client = genai.Client(api_key="k", http_options={"base_url": emu.base_url})
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, profile: str = "instant",
                 latency: dict | None = None, faults: dict | None = None,
                 rpm: int | None = None, seed: int | None = None, api_keys=None,
                 storage_limit_bytes: int | None = DEFAULT_STORAGE_LIMIT_BYTES,
                 state_dir=None):
        if storage_limit_bytes is not None and storage_limit_bytes < 0:
            raise ValueError(f"storage_limit_bytes must be >= 0, not {storage_limit_bytes}")
        self.host = host
        self.port = port
        self.state = State(seed=seed, storage_limit_bytes=storage_limit_bytes)
        self.state_dir = None if state_dir is None else StateDir(state_dir, self.state)
        if self.state_dir is not None:
            self.state_dir.load()
        self.behaviour = Behaviour(profile, latency, faults, rpm, seed, api_keys=api_keys)
        self.app = App(self.state, self.behaviour)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Emulator:
        """Listen (on the same port as before, after a stop) and serve on a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self.app)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.05}, name=f"gemini-emulator:{self.port}", daemon=True)
        self._thread.start()
        if self.state_dir is not None:
            self.state_dir.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections; the state stays for a later start()."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.state_dir is not None:
            self.state_dir.stop()

    def serve_forever(self) -> None:
        """Serve in the foreground until Ctrl+C (KeyboardInterrupt), then stop cleanly."""
        self.start()
        thread = self._thread
        assert thread is not None, "start() runs the server in a thread"
        try:
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> dict:
        """The same dict as ``GET /_emulator/stats``."""
        return self.app.stats()

    def operations(self) -> list[dict]:
        """The same list as ``GET /_emulator/operations``."""
        return self.state.operations_report()

    def reset(self) -> None:
        """Forget every file, store, document, operation and statistic (knobs stay)."""
        self.app.reset()

    def configure(self, **knobs) -> None:
        """Change knobs at run time: ``profile=``, ``latency=``, ``faults=`` (merged), ``rpm=``,
        ``api_keys=`` (the only valid keys; None accepts any)."""
        self.behaviour.configure(**knobs)

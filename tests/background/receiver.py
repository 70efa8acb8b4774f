"""A callback receiver: a tiny HTTP server on 127.0.0.1 that records every PUT (as CPEE's callback endpoint would)."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CallbackReceiver:
    """Records PUTs as (time.time(), path, JSON body); answers with the queued statuses, then 200."""

    def __init__(self):
        self.calls: list[tuple[float, str, dict]] = []
        self.statuses: list[int] = []  # answers for the next calls, in order (e.g. [500, 500])
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.delay)
                with receiver._lock:
                    receiver.calls.append((time.time(), self.path, json.loads(body or b"null")))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", receiver.url("/moved"))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str = "/callback") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def wait_for_calls(self, count: int, timeout: float) -> list[tuple[float, str, dict]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.calls) >= count:
                    return list(self.calls)
            time.sleep(0.02)
        raise TimeoutError(f"{len(self.calls)} of {count} callbacks arrived within {timeout}s")

    def __enter__(self) -> "CallbackReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

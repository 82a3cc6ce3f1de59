"""A local OpenAI-compatible /v1/chat/completions server for the tests of the voice build and the
judge: 127.0.0.1, a free port (port 0), and it shuts itself down after `lifetime_s` even if a test
never returns. Each test file passes the function that decides the answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Call:
    """One request as the server saw it; `number` counts from 1 in arrival order."""

    number: int
    path: str
    auth: str | None
    body: dict


# (status, text): 200 wraps text as the assistant message of a chat completion (None: a null
# content); any other status sends text as the raw body.
Answer = Callable[[Call], tuple[int, str | None]]


class OpenAIServer:
    def __init__(self, answer: Answer):
        self.answer = answer
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    call = Call(len(server.calls) + 1, self.path, self.headers.get("Authorization"), body)
                    server.calls.append(call)
                if call.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                status, text = server.answer(call)
                if status == 200:
                    message = {"role": "assistant", "content": text}
                    payload = json.dumps({"choices": [{"message": message}]}).encode()
                else:
                    payload = (text or "").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (the timeout tests make it): nothing to answer

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@contextmanager
def serve(answer: Answer, lifetime_s: float = 90) -> Iterator[OpenAIServer]:
    server = OpenAIServer(answer)
    thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stopper = threading.Timer(lifetime_s, server.httpd.shutdown)  # bounded even if the test never returns
    stopper.start()
    try:
        yield server
    finally:
        stopper.cancel()
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(5)

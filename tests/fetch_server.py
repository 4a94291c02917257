"""A local stand-in for the internet in tests: an HTTP server on 127.0.0.1 serving bytes from
a dict, with HTTP Range, and switches to cut a response short or to lie about its content."""
from __future__ import annotations

import contextlib
import http.server
import threading
from typing import Iterator


class Files:
  def __init__(self, files: dict[str, bytes]):
    self.files = dict(files)
    self.cut_after: int | None = None   # next full response stops after this many bytes
    self.lie = False                    # answer a Range request with other bytes
    self.requests: list[tuple[str, str | None]] = []  # (path, Range header)


def _handler(state: Files) -> type:
  class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
      pass

    def do_GET(self) -> None:
      name = self.path.lstrip("/")
      state.requests.append((name, self.headers.get("Range")))
      if name not in state.files:
        self.send_error(404)
        return
      data, start = state.files[name], 0
      if self.headers.get("Range"):
        start = int(self.headers["Range"].split("=")[1].rstrip("-"))
        if state.lie:
          data = b"x" * len(data)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
      else:
        self.send_response(200)
      body = data[start:]
      self.send_header("Content-Length", str(len(body)))
      self.end_headers()
      if state.cut_after is not None:
        body, state.cut_after = body[:state.cut_after], None
      self.wfile.write(body)

  return Handler


@contextlib.contextmanager
def serve(files: dict[str, bytes]) -> Iterator[tuple[str, Files]]:
  """(base URL, state); the server is always shut down, and requests time out in 10 s."""
  state = Files(files)
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
  server.timeout = 10
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}", state
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)

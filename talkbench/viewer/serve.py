"""Serve a viewer folder on the loopback interface (http.server; the folder also opens from disk)."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from talkbench.errors import TalkbenchError
from talkbench.hosts import allowed_hosts, host_of
from talkbench.viewer.write import PAGE

HOST = "127.0.0.1"


class _Handler(SimpleHTTPRequestHandler):
    hosts = allowed_hosts(HOST)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if host_of(self.headers.get("Host", "")) not in self.hosts:  # DNS rebinding
            self.send_error(421, "this viewer is served on 127.0.0.1 only")
            return False
        return True

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet: every data file is one request


def make_server(folder: str | Path, port: int = 8000) -> ThreadingHTTPServer:
    """A server of ``folder`` on 127.0.0.1 (``port`` 0: any free port); call ``serve_forever()``."""
    folder = Path(folder)
    if not (folder / PAGE).is_file():
        raise TalkbenchError(f"{folder} has no {PAGE}: write a viewer there with `bench view` first")
    handler = functools.partial(_Handler, directory=str(folder))
    try:
        return ThreadingHTTPServer((HOST, port), handler)
    except OSError as exc:
        raise TalkbenchError(f"cannot serve on {HOST}:{port}: {exc.strerror} (try --port 0)") from None

"""The moto S3 server helpers behind tests/conftest.py's fixtures, importable by name."""

from __future__ import annotations

import socket
import urllib.request

TEST_BUCKET = "d2v-test"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServerControl:
    """A ThreadedMotoServer that can be stopped (connections refused) and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._server = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stop()
        # stop() only leaves serve_forever: the listening socket stays open and new connections
        # would hang in its backlog. Closing it makes the endpoint refuse them, as a dead S3 does.
        self._server._server.server_close()  # noqa: SLF001 - no public API for this
        self._server = None

    def reset(self) -> None:
        """Forget every bucket and object (moto's state is per process, shared by all servers)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

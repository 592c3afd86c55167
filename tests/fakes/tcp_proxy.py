"""A TCP proxy on 127.0.0.1 that can cut every connection and refuse new ones, then restore.

Put it in front of PostgreSQL (or anything else) to make the server "go away" for a
while without stopping the real one, which other tests share:

    with TcpProxy("127.0.0.1", 5432) as proxy:
        ...connect to proxy.port...
        proxy.cut()      # open connections are reset, new ones are closed at once
        proxy.restore()  # new connections reach the server again
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._up = True
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.close()
        self.cut()

    @property
    def up(self) -> bool:
        return self._up

    def cut(self) -> None:
        """Reset every open connection; refuse new ones until restore()."""
        with self._lock:
            self._up = False
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock, reset=True)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                self.accepted += 1
                up = self._up
            if not up:
                _close(client, reset=True)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client, reset=True)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket, *, reset: bool = False) -> None:
    with contextlib.suppress(OSError):
        if reset:
            # SO_LINGER 0: the peer sees a reset, as when a server dies, not a polite close.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        # Wakes the thread blocked in recv() on it: close() alone would leave the
        # connection open until that recv() returned.
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()

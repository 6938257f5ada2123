"""A TCP proxy that can stop forwarding without closing anything: a database behind it
looks hung (connections stay open, the kernel still acknowledges, nothing answers), which
is a different fault from a refused connection. The machine's shared PostgreSQL is never
paused; only this proxy's forwarding is.

    with TcpProxy(("127.0.0.1", 5432)) as proxy:   # listens on proxy.port
        proxy.pause()    # connections open, nothing forwarded, new ones accepted and held
        proxy.resume()   # everything held flows again
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class TcpProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self._listener = socket.create_server((host, 0))
        self.host, self.port = host, self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> TcpProxy:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def pause(self) -> None:
        self._forwarding.clear()

    def resume(self) -> None:
        self._forwarding.set()

    def stop(self) -> None:
        self._stopped.set()
        self._forwarding.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._forwarding.wait()  # paused: the connection is accepted and held
        if self._stopped.is_set():
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        self._track(server)
        for src, dst in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._stopped.is_set():
                self._forwarding.wait()
                readable, _, _ = select.select([src], [], [], 0.2)
                if not readable:
                    continue
                self._forwarding.wait()  # paused between select and recv: hold the bytes
                data = src.recv(65536)
                if not data:
                    break
                self._forwarding.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

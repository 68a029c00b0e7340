"""Running the dashboard: waitress (a production WSGI server, pure Python) on one address, until
SIGINT or SIGTERM."""

from __future__ import annotations

import errno
import signal

from roadnode.errors import RoadnodeError


class ServeError(RoadnodeError):
    """The address cannot be served (port in use, no such address): exit code 3."""

    exit_code = 3


class Server:
    """``Server(app, host, port)`` binds at once (port 0: a free one); ``url`` is where it answers;
    ``run()`` serves until SIGINT/SIGTERM (or ``stop()``) and returns the signal that stopped it."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8080, threads: int = 4):
        from waitress import create_server

        try:
            self._srv = create_server(app, host=host, port=port, threads=threads, ident="roadnode")
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ServeError(f"{host}:{port} is in use (another `roadnode serve`? give --port)") from None
            if e.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
                raise ServeError(f"cannot listen on {host}:{port}: {e.strerror}") from None
            raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        self.host = self._srv.effective_host
        self.port = self._srv.effective_port

    @property
    def url(self) -> str:
        """The URL to open (IPv6 hosts bracketed)."""
        h = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{h}:{self.port}/"

    def run(self) -> int | None:
        """Serve until SIGINT/SIGTERM; the signal that stopped it."""
        got: list[int] = []

        def on_signal(signum, frame):
            """Remember the signal and stop waitress's loop."""
            got.append(signum)
            raise SystemExit(0)  # waitress's loop catches it and shuts its workers down

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._srv.run()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self.close()
        return got[0] if got else None

    def close(self) -> None:
        """Close the listening sockets (errors ignored: closing anyway)."""
        try:
            self._srv.close()
        except Exception:
            pass

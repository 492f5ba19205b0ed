"""Serving the picking page: a socket on ``host`` (127.0.0.1 by default), a token, uvicorn.

The socket is bound before the server starts (port ``0`` asks the OS for a free one), so the
printed URL always names the port really served. The token is ``secrets.token_urlsafe(24)``,
new for every run; the URL carries it (``http://127.0.0.1:N/?token=...``).
"""

from __future__ import annotations

import secrets
import socket
import sys
from dataclasses import dataclass
from typing import Any

from cryoflow.errors import ConfigError
from cryoflow.io.layout import open_dataset

__all__ = ["Served", "bind", "serve"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Served:
    """A bound socket and the page's URL."""

    sock: socket.socket
    url: str
    token: str


def bind(host: str = "127.0.0.1", port: int | None = None) -> Served:
    """Bind ``host:port`` (a free port when ``port`` is None or 0) and make a token."""
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535; got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port or 0))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(64)
    token = secrets.token_urlsafe(24)
    shown = f"[{host}]" if ":" in host else host
    return Served(sock, f"http://{shown}:{sock.getsockname()[1]}/?token={token}", token)


def serve(
    store: str,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    key: str = "tomogram",
    cluster: Any = None,
    cache_mib: int = 1024,
) -> None:
    """Serve the picking page for ``store`` until interrupted (prints its URL first)."""
    import uvicorn

    from cryoflow.pipelines.picker.app import create_app

    open_dataset(store)  # a clear error now, not on the first request
    served = bind(host, port)
    if host not in LOCAL_HOSTS:
        print(
            f"cryoflow: warning: serving on {host}, reachable from other machines; anyone with "
            "the URL (and its token) can read and change this store's picks",
            file=sys.stderr,
        )
    if cache_mib < 0:
        raise ConfigError(f"--cache-mib must be >= 0; got {cache_mib}")
    app = create_app(store, served.token, key=key, cluster=cluster, cache_bytes=cache_mib << 20)
    port_n = served.sock.getsockname()[1]
    print(f"cryoflow picker: {served.url}", flush=True)
    print(
        f"cryoflow: from another machine, tunnel first: ssh -N -L {port_n}:127.0.0.1:{port_n} "
        "USER@THIS_HOST, then open the URL above",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[served.sock])

"""uvicorn's own command line (`uvicorn_serve.py --fd 3 app:asgi` takes every uvicorn flag), with
two fixes for serving an inherited socket.

uvicorn opens `--fd` as a unix socket whatever it is (socket.fromfd(fd, AF_UNIX, ...)), so
asyncio does not set TCP_NODELAY on the TCP connections it accepts from it, and a keep-alive
client waits out Nagle's algorithm against its own delayed ACK: 40 ms added to many responses.
Here the socket's family is read from the descriptor itself.

A stopping uvicorn (0.17 as Debian ships it, and later) stops listening and, in the same turn of
its event loop, closes every connection it has not read a request from, including those it
accepted a moment before whose request is already in the kernel's buffer: their clients get
"connection reset by peer". Alone on a port that loses little; one of several workers sharing
a socket, stopped at each rolling restart under load, it loses a request every few stops.
Here a stopping server stops listening first, then waits a tenth of a second so that those
requests are read and served, and only then closes the connections that are idle.

With NARWHAL_PRELOAD=true it imports the app once, then waits at narwhal's fork point
(narwhal_fork.py, beside this file or in the repository's contrib/python); uvicorn runs in each
worker forked from there, and finds the app already imported.
"""
import asyncio
import os
import socket
import sys

import uvicorn
from uvicorn.server import Server

def _fromfd(fd, family, type, proto=0):
    return socket.socket(fileno=os.dup(fd))  # family and type from the descriptor


socket.fromfd = _fromfd
_shutdown = Server.shutdown


async def _read_then_shutdown(self, sockets=None):
    for server in self.servers:
        server.close()
    await asyncio.sleep(0.1)
    await _shutdown(self, sockets)


Server.shutdown = _read_then_shutdown


def _preload():
    sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "contrib", "python"))
    import narwhal_fork
    from uvicorn.importer import import_from_string

    params = uvicorn.main.make_context("uvicorn", sys.argv[1:]).params  # uvicorn's own parsing
    sys.path.insert(0, params["app_dir"])
    import_from_string(params["app"])
    narwhal_fork.fork_point()


if __name__ == "__main__":
    if os.environ.get("NARWHAL_FORK_FD"):
        _preload()
    sys.exit(uvicorn.main())

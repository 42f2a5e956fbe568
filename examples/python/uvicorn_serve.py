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

if __name__ == "__main__":
    sys.exit(uvicorn.main())

"""uvicorn's own command line (`uvicorn_serve.py --fd 3 app:asgi` takes every uvicorn flag), with
one fix for running several copies on one shared socket.

A stopping uvicorn (0.17 as Debian ships it, and later) stops listening and, in the same turn of
its event loop, closes every connection it has not read a request from, including those it
accepted a moment before whose request is already in the kernel's buffer: their clients get
"connection reset by peer". Alone on a port that loses little; one of several workers sharing
a socket, stopped at each rolling restart under load, it loses a request every few stops.
Here a stopping server stops listening first, then waits a tenth of a second so that those
requests are read and served, and only then closes the connections that are idle.
"""
import asyncio
import sys

import uvicorn
from uvicorn.server import Server

_shutdown = Server.shutdown


async def _read_then_shutdown(self, sockets=None):
    for server in self.servers:
        server.close()
    await asyncio.sleep(0.1)
    await _shutdown(self, sockets)


Server.shutdown = _read_then_shutdown

if __name__ == "__main__":
    sys.exit(uvicorn.main())

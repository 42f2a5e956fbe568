"""narwhal's example worker in Python: an HTTP server on the socket narwhal passes down
(socket.socket(fileno=3)), or on $PORT when run alone. It answers with its pid,
NARWHAL_WORKER_ID and NARWHAL_GENERATION, has /slow?ms=N for drain tests, and on SIGTERM
finishes the requests in flight before it exits.

BOOT_DELAY (such as 300ms or 2s) delays the start like a real app loading its code.
NOTIFY=socket or NOTIFY=fd sends READY=1 over NOTIFY_SOCKET or NARWHAL_NOTIFY_FD; without it
narwhal sees serve_forever() polling the socket and needs no message.
"""
import json
import os
import re
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HELLO = (json.dumps({
    "pid": os.getpid(),
    "worker_id": os.environ.get("NARWHAL_WORKER_ID", ""),
    "generation": os.environ.get("NARWHAL_GENERATION", ""),
    "listen_pid": os.environ.get("LISTEN_PID", ""),
}) + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        ms = None
        body = HELLO
        if url.path == "/slow":
            # Headers at once (a client then knows a worker holds the request), the body after ms.
            ms = int(parse_qs(url.query).get("ms", ["0"])[0])
            body = f"slept {ms}ms in pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        if ms:
            time.sleep(ms / 1000)
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight


def make_server():
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")) >= 1:
        sock = socket.socket(fileno=3)
        server = Server(sock.getsockname()[:2], Handler, bind_and_activate=False)
        server.socket = sock
        return server
    server = Server(("", int(os.environ.get("PORT", "8080"))), Handler, bind_and_activate=False)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    server.server_bind()
    server.server_activate()
    return server


def notify_ready(how):
    if how == "socket":
        addr = os.environ["NOTIFY_SOCKET"]
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1", addr)
    elif how == "fd":
        os.write(int(os.environ["NARWHAL_NOTIFY_FD"]), b"READY=1\n")


def parse_delay(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", s or "")
    if not m:
        return 0.0
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def main():
    time.sleep(parse_delay(os.environ.get("BOOT_DELAY")))
    server = make_server()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    notify_ready(os.environ.get("NOTIFY"))
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()

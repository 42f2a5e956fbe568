"""The same small app for the Python servers people run: `app` for WSGI (gunicorn, uwsgi) and
`asgi` for ASGI (uvicorn). GET / answers with the pid of the process that served it,
NARWHAL_WORKER_ID and NARWHAL_GENERATION, so a test can tell the generations apart.

BOOT_DELAY (such as 300ms or 5s) makes the import take that long, like a real app loading its
code; BOOT_FAIL=1 makes it raise instead, like a release that is broken at boot.

    gunicorn --chdir examples/python app:app             # under narwhal: takes fd 3 by itself
    python3 -m uvicorn --app-dir examples/python --fd 3 app:asgi
"""
import json
import os
import re
import time


def _seconds(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", s or "")
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1) if m else 0.0


time.sleep(_seconds(os.environ.get("BOOT_DELAY")))
if os.environ.get("BOOT_FAIL") == "1":
    raise RuntimeError("BOOT_FAIL=1: this release is broken at boot")


def _hello():
    return (json.dumps({
        "pid": os.getpid(),
        "worker_id": os.environ.get("NARWHAL_WORKER_ID", ""),
        "generation": os.environ.get("NARWHAL_GENERATION", ""),
        "listen_pid": os.environ.get("LISTEN_PID", ""),
    }) + "\n").encode()


def app(environ, start_response):
    body = _hello()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    body = _hello()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

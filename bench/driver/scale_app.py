"""The app of the dynamic-size benchmark: each request takes 5 ms of CPU and 20 ms of waiting
(a query to a database, say), and gunicorn's sync worker serves one request at a time, so a
worker answers about 35 requests a second and more load queues."""
import time


def app(environ, start_response):
    until = time.process_time() + 0.005
    while time.process_time() < until:
        pass
    time.sleep(0.020)
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

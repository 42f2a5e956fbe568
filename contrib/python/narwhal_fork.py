"""narwhal's fork point for Python apps (NARWHAL_PRELOAD=true). Copy this file beside your app.

With NARWHAL_PRELOAD=true narwhal starts COMMAND once per generation as a template. The template
loads the app and calls fork_point(); from then on it only forks workers on narwhal's request, so
the workers share the memory of the loaded app. fork_point() returns in each worker, with that
worker's sockets, pipes and environment in place, as if narwhal had started it. Without
NARWHAL_FORK_FD in the environment it returns at once, so the same app runs unchanged without
preload.

Before it reports ready, fork_point() calls gc.freeze() (fork_point(freeze=False) does not): the
objects loaded so far move to a generation the collector never scans, so collections in the
workers do not write to, and so copy, the pages they share with the template.

gunicorn 20 and later: this module is also a gunicorn config. Each narwhal worker is then one
gunicorn worker process running the worker class (sync, gthread with --threads, or another -k)
straight from the template, with no gunicorn master of its own:

    NARWHAL_PRELOAD=true narwhal gunicorn -c narwhal_fork.py app:app

(-c takes the file's path; -c python:narwhal_fork, the module from the current directory or
PYTHONPATH, works too, but not from --chdir, which gunicorn applies after reading -c.) narwhal
sets the number of workers, so --workers has no effect. With no master, gunicorn's --timeout
is narwhal's to enforce: set NARWHAL_WORKER_TIMEOUT (say 30s) and each worker's heartbeat goes to
narwhal as WATCHDOG=1, so a worker stuck on one request or one silent client gets SIGABRT, then
SIGKILL, and is replaced, as gunicorn's master would do. NARWHAL_STOP_TIMEOUT bounds a stop, in
place of --graceful-timeout. SIGTERM stops a worker gracefully and SIGQUIT at once, as usual. The post_fork,
post_worker_init, worker_int and worker_exit hooks run in each worker; pre_fork and when_ready
do not, since there is no master forking. With a config file of your own, import the two
settings into it: `from narwhal_fork import on_starting, preload_app`.

Any other server: load the app, then call the fork point, then serve fd 3.. as usual:

    application = load_my_app()
    narwhal_fork.fork_point()
    serve(socket.socket(fileno=3), application)

The protocol with narwhal (version 1), on the AF_UNIX SOCK_SEQPACKET socket at NARWHAL_FORK_FD:
the template sends READY, then narwhal sends one message per worker, "FORK <id>" followed by
"FD <target>" lines, one per descriptor passed with it (the i-th becomes fd <target>), and
"ENV <NAME>=<VALUE>" lines. The template forks a child that forks the worker and exits, so the
worker is re-parented to narwhal (a subreaper); the worker sends "FORKED <id>" itself, since
narwhal reads its PID from the message's credentials. A failed fork answers "ERROR <id> <why>".
When narwhal closes the socket, the template exits.
"""
import ctypes
import fcntl
import gc
import os
import signal
import socket
import sys
import time

_PR_SET_PDEATHSIG = 1


def fork_point(freeze=True):
    """Return in each worker narwhal asks for; never return in the template."""
    fd = os.environ.get("NARWHAL_FORK_FD")
    if not fd:
        return
    # Out of the way of the fd numbers narwhal gives the workers (1, 2, 3.. and the notify pipe).
    high = fcntl.fcntl(int(fd), fcntl.F_DUPFD_CLOEXEC, 100)
    os.close(int(fd))
    sock = socket.socket(fileno=high)
    # The template stops on SIGTERM or SIGINT whatever the app set; its workers get the app's back.
    handlers = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGINT)}
    if freeze:
        gc.freeze()
    _flush()
    sock.send(b"READY")
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 65536, 253, socket.MSG_CMSG_CLOEXEC)  # the kernel's most
        if not msg and not fds:
            _flush()
            os._exit(0)  # narwhal closed the socket: it is stopping this template, or gone
        fork_id, targets, env = _parse(msg.decode(errors="replace"))
        if fork_id is None:
            pass  # not a FORK: a message from a later protocol version
        elif len(targets) != len(fds):
            _send(sock, f"ERROR {fork_id} {len(fds)} descriptors came with {len(targets)} FD lines")
        else:
            _flush()  # or each worker would write the template's buffered output again
            try:
                child = os.fork()
            except OSError as e:
                _send(sock, f"ERROR {fork_id} fork: {e}")
            else:
                if child == 0:
                    _become_worker(sock, fork_id, fds, targets, env)
                    for sig, handler in handlers.items():
                        if handler is not None:  # None: set outside Python, cannot be restored
                            signal.signal(sig, handler)
                    return
                _, status = os.waitpid(child, 0)
                if status:  # its own fork failed
                    _send(sock, f"ERROR {fork_id} fork: the intermediate child ended with status {status:#x}")
        for fd in fds:
            os.close(fd)


def _parse(text):
    """Return the id, FD targets and ENV pairs of a FORK message; the id is None for any other."""
    lines = text.split("\n")
    kind, _, fork_id = lines[0].partition(" ")
    if kind != "FORK" or not fork_id:
        return None, [], {}
    targets = [int(line[3:]) for line in lines if line.startswith("FD ")]
    env = dict(line[4:].split("=", 1) for line in lines if line.startswith("ENV ") and "=" in line)
    return fork_id, targets, env


def _become_worker(sock, fork_id, fds, targets, env):
    """In the first child: fork the worker and exit. In the worker: set it up and return."""
    middle = os.getpid()
    try:
        if os.fork():
            os._exit(0)
    except OSError as e:
        print(f"narwhal_fork: fork: {e}", file=sys.stderr, flush=True)
        os._exit(1)
    # Until the first child is gone and the kernel has handed this process to narwhal, a
    # parent-death signal would fire at the first child's exit.
    deadline = time.monotonic() + 5
    while os.getppid() == middle:
        if time.monotonic() > deadline:
            os._exit(1)
        time.sleep(0.001)
    parent = os.getppid()
    if ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL)) != 0:
        os._exit(1)
    if os.getppid() != parent:
        os._exit(1)  # narwhal died before the signal was set: nobody would kill this worker
    os.setpgid(0, 0)
    # Above every target first, so that placing one descriptor cannot overwrite another.
    top = max(targets, default=2) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for fd in fds]
    for fd in fds:
        os.close(fd)
    for fd, target in zip(moved, targets):
        os.dup2(fd, target)  # inheritable: not closed if the worker execs
        os.close(fd)
    os.environ.update(env)
    if "LISTEN_FDS" in os.environ:
        os.environ["LISTEN_PID"] = str(os.getpid())
    if not _send(sock, f"FORKED {fork_id}"):
        os._exit(1)
    sock.close()
    del os.environ["NARWHAL_FORK_FD"]


def _send(sock, text):
    try:
        sock.send(text.encode())
        return True
    except OSError:
        return False


def _flush():
    for f in (sys.stdout, sys.stderr):
        if f is not None:
            f.flush()


# gunicorn config: see the module's docstring.

preload_app = True


def on_starting(server):
    """gunicorn's hook, run by its master before it binds or forks: here, the fork point."""
    if "NARWHAL_FORK_FD" not in os.environ:
        return
    if server.cfg.workers > 1:
        server.log.warning("narwhal sets the number of workers: --workers %d has no effect", server.cfg.workers)
    fork_point()
    # A worker from here on, as gunicorn's Arbiter.spawn_worker runs one, with narwhal as the
    # parent the worker watches (a worker stops when its parent PID changes).
    from gunicorn import sock as gsock, systemd, util
    from gunicorn.errors import AppImportError

    n = systemd.listen_fds()
    server.LISTENERS = gsock.create_sockets(server.cfg, server.log, range(3, 3 + n) if n else None)
    # The worker wakes at least this often to beat; with no master to hear the beat, it goes
    # to narwhal's watchdog (NARWHAL_WORKER_TIMEOUT) instead, which then does --timeout's job.
    watchdog = int(os.environ.get("WATCHDOG_USEC", "0")) / 1e6
    wake = server.timeout / 2.0
    if watchdog:
        wake = min(wake, watchdog / 2) if wake else watchdog / 2
    worker = server.worker_class(1, os.getppid(), server.LISTENERS, server.app, wake, server.cfg, server.log)
    worker.pid = os.getpid()
    if watchdog:
        worker.notify = _beating(worker.notify, watchdog / 4)
    try:
        util._setproctitle("worker [%s]" % server.proc_name)
        server.log.info("Booting worker with pid: %s", worker.pid)
        server.cfg.post_fork(server, worker)
        worker.init_process()
        sys.exit(0)
    except SystemExit:
        raise
    except AppImportError as e:
        print(e, file=sys.stderr, flush=True)
        sys.exit(server.APP_LOAD_ERROR)
    except Exception:
        server.log.exception("Exception in worker process")
        sys.exit(server.WORKER_BOOT_ERROR if not worker.booted else -1)
    finally:
        server.log.info("Worker exiting (pid: %s)", worker.pid)
        worker.tmp.close()
        server.cfg.worker_exit(server, worker)


def _beating(notify, every):
    """Wrap a gunicorn worker's heartbeat so that it also sends WATCHDOG=1, at most once per `every` seconds."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    last = -every

    def beat():
        nonlocal last
        notify()
        now = time.monotonic()
        if now - last >= every:
            last = now
            try:
                sock.sendto(b"WATCHDOG=1", socket.MSG_DONTWAIT, address)
            except OSError:
                pass  # narwhal gone or busy: its watchdog decides, as for any worker

    return beat

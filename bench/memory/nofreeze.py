"""bench/memory.sh's narwhal + gunicorn with preload, without gc.freeze() before the fork point:
what freezing the objects loaded at boot saves. A gunicorn config, as contrib/python/narwhal_fork.py."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "contrib", "python"))
import narwhal_fork  # noqa: E402
from narwhal_fork import on_starting, preload_app  # noqa: E402,F401

_fork_point = narwhal_fork.fork_point
narwhal_fork.fork_point = lambda freeze=True: _fork_point(freeze=False)

# puma in single mode, one per narwhal slot: narwhal is the cluster, so no puma workers.
# Run with --bind-to-activated-sockets only, so that puma serves the socket narwhal passes down
# (fd 3, LISTEN_FDS) and binds nothing of its own.
workers 0
threads 1, 5
# A connection puma has accepted but not yet read a request from waits in its reactor, and a
# stopping puma closes those unanswered: with a socket shared by several processes, that is a
# request lost per stop now and then (an EOF at the client). Without the reactor a thread reads
# the request itself, and a stopping puma finishes what its threads hold.
queue_requests false

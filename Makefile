# narwhal: `make demo` runs a pool of the example worker on :8080; `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build demo test test-unit test-e2e test-kubernetes bench bench-peers clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/narwhal .
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/example-go ./examples/go

# A pool of four workers of the Go example on :8080, metrics on :9090.
# Try: curl localhost:8080; kill -HUP <narwhal's pid> for a rolling restart; Ctrl-C to stop.
demo: build
	NARWHAL_LISTEN=:8080 NARWHAL_WORKERS=4 NARWHAL_LOG_FORMAT=text bin/narwhal bin/example-go

# Every test: the unit tests and the end-to-end ones (build tag e2e: narwhal as PID 1 of a new
# PID namespace, real app servers, containers; root), the chart's (deploy/, its own module so
# Helm stays out of the binary's), and the chart's pods on a real kubelet.
test: test-e2e
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -skip '^(TestKubelet|TestCluster)$$' ./...
	cd bench && $(GO) vet ./...
	$(MAKE) test-kubernetes

# The fast loop: unit tests only (fixtures, injected clocks; no root, no servers), in seconds.
test-unit:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# Unit and end-to-end tests together, with the race detector. The internal/supervisor package
# takes about 15 minutes on two busy cores, and twice that beside other busy work.
test-e2e:
	$(GO) vet -tags e2e ./...
	$(GO) test -race -count=1 -tags e2e -timeout 60m ./...

# The chart's pods on a real standalone kubelet with a private containerd, then the chart on a
# one-node cluster (etcd, API server, controller manager, scheduler, kube-proxy, kubelet) in a
# network namespace of its own, beside tini (root, Docker, containerd and runc). The first run
# builds Kubernetes and etcd from the Go module proxy, about fifteen minutes on two cores, and
# caches them under ~/.cache/narwhal.
test-kubernetes:
	cd deploy && $(GO) test -count=1 -v -run '^(TestKubelet|TestCluster)$$' -timeout 75m .

# Benchmarks on 127.0.0.1, each a script of its own that rewrites its section of bench/RESULTS.md:
# rollouts under wrk load (bench/run), init mode beside tini, dumb-init and catatonit (bench/init),
# the dynamic size under a stepped load (bench/scale.sh), worker output through narwhal
# (bench/output.sh), the balance across workers per socket mode beside node's cluster module
# (bench/balance.sh), what reading proportional memory costs narwhal (bench/pss.sh), memory beside
# the peers (bench/memory.sh), deploys with preload beside unicorn's re-exec (bench/preload.sh).
bench:
	bench/run
	bench/init
	bench/scale.sh
	bench/output.sh
	bench/balance.sh
	bench/pss.sh
	bench/memory.sh
	bench/preload.sh

# narwhal beside gunicorn, unicorn, puma, uwsgi and a node-cluster runner through four deploys
# (healthy, slow boot, broken, hung); installs the servers from Debian. About 40 minutes.
bench-peers:
	bench/peers.sh

clean:
	rm -rf bin

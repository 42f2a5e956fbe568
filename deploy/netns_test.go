package deploy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netns is a network namespace of the test's own, where the cluster's node runs: its bridge,
// its firewall rules (kube-proxy's) and its conntrack table are the namespace's, so the host's
// are never touched. Besides lo it has a veth pair, both ends inside (this kernel has no dummy
// device): node0 holds the node's address and the default route, since the API server and the kubelet need an address to advertise, and a packet
// to a Service's ClusterIP needs a route before kube-proxy's rules rewrite where it goes.
type netns struct {
	name, path string
}

const nodeIP = "10.231.8.2"

func newNetns(t *testing.T) *netns {
	t.Helper()
	ns := &netns{name: fmt.Sprintf("narwhal-k8s-%d", os.Getpid())}
	ns.path = "/run/netns/" + ns.name
	ip := func(args ...string) {
		t.Helper()
		if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, b)
		}
	}
	ip("netns", "add", ns.name)
	t.Cleanup(func() {
		if b, err := exec.Command("ip", "netns", "delete", ns.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", ns.name, err, b)
		}
	})
	ip("-n", ns.name, "link", "set", "lo", "up")
	ip("-n", ns.name, "link", "add", "node0", "type", "veth", "peer", "name", "node1")
	ip("-n", ns.name, "addr", "add", nodeIP+"/24", "dev", "node0")
	ip("-n", ns.name, "link", "set", "node0", "up")
	ip("-n", ns.name, "link", "set", "node1", "up")
	ip("-n", ns.name, "route", "add", "default", "dev", "node0")
	return ns
}

// command is args run in the namespace (its network only: the file system is the host's,
// so the kubelet's mounts and containerd's stay visible to each other).
func (ns *netns) command(args ...string) []string {
	return append([]string{"nsenter", "--net=" + ns.path, "--"}, args...)
}

// dial opens a connection from inside the namespace. A socket belongs to the namespace of the
// thread that creates it: the dial runs on a thread of its own, moved into the namespace and
// never moved back (a locked thread ends with its goroutine).
func (ns *netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- dialed{nil, err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- dialed{nil, fmt.Errorf("setns %s: %w", ns.path, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- dialed{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// client is an HTTP client whose connections start in the namespace, one per request.
func (ns *netns) client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: ns.dial, DisableKeepAlives: true}}
}

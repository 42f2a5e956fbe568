package pool

import (
	"testing"

	"github.com/narwhal-init/narwhal/config"
	"golang.org/x/sys/unix"
)

// TestListenerIsPlainTCP: workers get a TCP socket, not Go's default MPTCP one, whose protocol
// (262) makes runtimes such as asyncio skip TCP_NODELAY on every connection accepted from it.
func TestListenerIsPlainTCP(t *testing.T) {
	s, err := bind(config.Listener{Name: "listen0", Network: "tcp", Address: "127.0.0.1:0"}, 16, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	proto, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	if proto != unix.IPPROTO_TCP {
		t.Errorf("the socket passed to workers has protocol %d, want TCP (%d)", proto, unix.IPPROTO_TCP)
	}
}

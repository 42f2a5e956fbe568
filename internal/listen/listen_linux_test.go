package listen

import (
	"errors"
	"os"
	"path/filepath"
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

// TestBalancedNeedsATCPListener: unix sockets cannot form a reuseport group, so balanced mode
// with none but them is unavailable (and New runs the pool as inherit, saying why).
func TestBalancedNeedsATCPListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.sock")
	_, err := NewBalancer(config.Listeners{{Name: "listen0", Network: "unix", Address: path}}, 16)
	if !errors.Is(err, ErrNoBalance) {
		t.Fatalf("NewBalancer of a unix listener alone: %v, want ErrNoBalance", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("the unix socket was bound all the same")
	}
}

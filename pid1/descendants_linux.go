package pid1

import (
	"os"
	"syscall"

	"github.com/narwhal-init/narwhal/internal/proc"
	"golang.org/x/sys/unix"
)

// signalDescendants sends sig to every process below narwhal and reports how many it reached.
// As PID 1 that is kill(-1), which the kernel confines to narwhal's PID namespace; as a
// subreaper it walks /proc, since kill(-1) would reach the whole host.
func signalDescendants(sig syscall.Signal) int {
	if os.Getpid() == 1 {
		if err := unix.Kill(-1, sig); err != nil {
			return 0 // ESRCH: nothing left
		}
		return -1 // some, number unknown without a /proc of our own
	}
	n := 0
	for _, pid := range proc.Host.Snapshot().Descendants(os.Getpid()) {
		if unix.Kill(pid, sig) == nil {
			n++
		}
	}
	return n
}

package pool

import (
	"math"
	"runtime"

	"github.com/narwhal-init/narwhal/internal/proc"
)

// AutoWorkers is NARWHAL_WORKERS=auto, and why: the container's CPU limit, rounded up, at least
// 1; else a cpuset that leaves fewer CPUs than the machine has; else 1, never the host's CPU
// count, which says nothing about the container.
//
// Go's runtime reads the same quota for GOMAXPROCS, but never goes below 2 and yields to a
// GOMAXPROCS variable, so it cannot stand in for this.
func AutoWorkers() (int, string) { return autoWorkers(proc.Host, runtime.NumCPU()) }

func autoWorkers(fs proc.FS, usable int) (int, string) {
	if limit, ok := fs.CPULimit(); ok {
		return max(1, int(math.Ceil(limit))), "the container's CPU quota"
	}
	if online := fs.OnlineCPUs(); online > 0 && usable < online {
		return usable, "the container's cpuset"
	}
	return 1, "no CPU limit found: set NARWHAL_WORKERS or a CPU limit"
}

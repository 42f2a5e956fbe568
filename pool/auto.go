package pool

import (
	"math"
	"runtime"

	"github.com/narwhal-init/narwhal/internal/proc"
)

// AutoWorkers is NARWHAL_WORKERS=auto, and why: the container's CPU limit, rounded up, at least
// 1; else cpus, NARWHAL_CPUS (the chart's CPU request: many clusters set requests and no
// limits); else a cpuset that leaves fewer CPUs than the machine has; else 1, never the host's
// CPU count, which says nothing about the container.
//
// Go's runtime reads the same quota for GOMAXPROCS, but never goes below 2 and yields to a
// GOMAXPROCS variable, so it cannot stand in for this.
func AutoWorkers(cpus int) (int, string) { return autoWorkers(proc.Host, cpus, runtime.NumCPU()) }

func autoWorkers(fs proc.FS, cpus, usable int) (int, string) {
	if limit, ok := fs.CPULimit(); ok {
		return max(1, int(math.Ceil(limit))), "the container's CPU quota"
	}
	if cpus > 0 {
		return cpus, "NARWHAL_CPUS"
	}
	if online := fs.OnlineCPUs(); online > 0 && usable < online {
		return usable, "the container's cpuset"
	}
	return 1, "no CPU limit found: set NARWHAL_WORKERS, NARWHAL_CPUS or a CPU limit"
}

// Package fit fits the pool to its container: it resolves what depends on the machine
// (NARWHAL_WORKERS=auto from the CPU quota, request or cpuset; NARWHAL_MAX_MEMORY and
// NARWHAL_MEMORY_BUDGET shares of the memory limit) into numbers, or a configuration error
// found before anything starts.
package fit

import (
	"cmp"
	"math"
	"runtime"

	"github.com/narwhal-init/narwhal/config"
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

// MemoryLimits resolves NARWHAL_MAX_MEMORY and NARWHAL_MEMORY_BUDGET to bytes against the
// container's memory limit; a share of a limit the cgroup does not have is a configuration
// error, found before anything starts.
func MemoryLimits(cfg *config.Config, fs proc.FS) (maxMemory, budget int64, err error) {
	var limit int64
	if cfg.MaxMemory.Share > 0 || cfg.MemoryBudget > 0 {
		mem, _ := fs.CgroupMemory()
		limit = mem.Limit
	}
	const noLimit = "a share needs the container's memory limit, and its cgroup has none"
	maxMemory, ok := cfg.MaxMemory.Of(limit)
	if !ok {
		return 0, 0, &config.Error{Variable: config.Prefix + "_MAX_MEMORY", Value: cfg.MaxMemory.String(),
			Reason: noLimit + "; give a size such as 512Mi, or set a memory limit"}
	}
	if cfg.MemoryBudget > 0 {
		if limit == 0 {
			return 0, 0, &config.Error{Variable: config.Prefix + "_MEMORY_BUDGET", Value: cfg.MemoryBudget.String(),
				Reason: noLimit + "; set a memory limit, or 0 for no budget"}
		}
		budget = int64(float64(cfg.MemoryBudget) * float64(limit))
	}
	return maxMemory, budget, nil
}

// Size is the pool's size from NARWHAL_WORKERS: its MIN and MAX (equal without a range), and
// why, when auto decided a bound. An auto bound that would cross a given one yields to it.
// NARWHAL_MIN_READY above MAX is a *config.Error: only here, on the machine, is auto known.
func Size(cfg *config.Config) (lo, hi int, why string, err error) { return size(cfg, AutoWorkers) }

func size(cfg *config.Config, resolve func(cpus int) (int, string)) (lo, hi int, why string, err error) {
	w := cfg.Workers
	auto := 0
	if w.Auto() {
		auto, why = resolve(int(cfg.CPUs))
	}
	lo, hi = w.Min, w.Max
	switch {
	case !w.Range:
		lo = cmp.Or(lo, auto)
		hi = lo
	case lo == 0 && hi == 0:
		lo, hi = auto, auto
	case lo == 0:
		lo = min(auto, hi)
	case hi == 0:
		hi = max(auto, lo)
	}
	return lo, hi, why, cfg.CheckMinReady(hi, why)
}

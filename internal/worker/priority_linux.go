package worker

import (
	"github.com/narwhal-init/narwhal/internal/proc"
	"golang.org/x/sys/unix"
)

// bootNice is how far below narwhal's own a booting worker's CPU priority is: at nice +10 it
// gets about a tenth of a serving worker's share of a busy CPU.
const bootNice = 10

// capSysNice is CAP_SYS_NICE, which raising a priority back needs.
const capSysNice = 23

// BootPriority runs each worker at a lower CPU priority while it boots, so that a replacement
// loading its code during a rollout takes the CPU the serving workers leave idle, not theirs,
// and gives it narwhal's own priority once it is ready. Lowering a priority is always allowed
// and raising it is not, so it is on only where narwhal may raise it again: elsewhere a worker
// would stay low for its whole life.
type BootPriority struct{ base int }

// NewBootPriority returns nil where narwhal could not give a worker its priority back.
func NewBootPriority() *BootPriority {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		return nil
	}
	base := 20 - prio // the system call answers 20 - nice, so that it is never negative
	if base >= 19 {
		return nil // already as low as it goes
	}
	var lim unix.Rlimit
	raisable := proc.Host.HasCapability(capSysNice) ||
		(unix.Getrlimit(unix.RLIMIT_NICE, &lim) == nil && lim.Cur >= uint64(20-base))
	if !raisable {
		return nil
	}
	return &BootPriority{base: base}
}

// Booting lowers the priority of every thread in pid's process group (the worker's own).
func (b *BootPriority) Booting(pid int) {
	unix.Setpriority(unix.PRIO_PGRP, pid, min(b.base+bootNice, 19))
}

// Serving gives pid's process group narwhal's priority back.
func (b *BootPriority) Serving(pid int) { unix.Setpriority(unix.PRIO_PGRP, pid, b.base) }

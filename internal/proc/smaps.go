package proc

import (
	"os"
	"strconv"
	"strings"
)

// Shares is the memory a group of processes holds when pages are shared (with a preloaded
// template, with siblings, or merged by ksmd): each shared page counted as a share, not whole
// in every process that maps it.
type Shares struct {
	// Proportional is the sum of Pss from each process's smaps_rollup: every page divided by
	// the number of processes that map it. Summed over a pool, it is the memory the pool holds.
	Proportional int64
	// Merged is the memory of pages ksmd merged (ksm_merging_pages), with NARWHAL_MEMORY_MERGE.
	Merged int64
	// Known is false when no process's smaps_rollup could be read (another user's processes,
	// without CAP_SYS_PTRACE): the caller falls back on resident memory.
	Known bool
}

// Shares reads the proportional and merged memory of pids. Reading smaps_rollup walks the
// process's page tables, so it costs far more than stat: callers read it at their own, slower
// pace.
func (fs FS) Shares(pids []int) Shares {
	var s Shares
	buf := make([]byte, 4096) // smaps_rollup is about 1 KiB
	page := int64(os.Getpagesize())
	for _, pid := range pids {
		n, err := readInto(fs.pidPath(pid, "smaps_rollup"), buf)
		if err != nil {
			continue
		}
		if pss, ok := ParseRollup(string(buf[:n])); ok {
			s.Proportional += pss
			s.Known = true
		}
		if n, err := readInto(fs.pidPath(pid, "ksm_merging_pages"), buf); err == nil {
			if pages, err := strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64); err == nil {
				s.Merged += pages * page
			}
		}
	}
	return s
}

// ParseRollup returns the Pss line of a /proc/PID/smaps_rollup, in bytes.
func ParseRollup(text string) (pss int64, ok bool) {
	for line := range strings.Lines(text) {
		rest, found := strings.CutPrefix(line, "Pss:")
		if !found {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil || kb < 0 {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

// KSMRunning reports whether the host's ksmd merges pages (/sys/kernel/mm/ksm/run is 1), and
// whether that could be read at all.
func (fs FS) KSMRunning() (running, known bool) {
	text, err := fs.read("/sys/kernel/mm/ksm/run")
	if err != nil {
		return false, false
	}
	return strings.TrimSpace(text) == "1", true
}

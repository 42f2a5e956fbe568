package proc

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ShedExecutable lets go of the pages of this process's own executable that it mapped while
// starting: a Go binary touches nearly all of its code and constants as the runtime and the
// packages initialise, and the kernel maps them in 64 kB blocks, so a process that then only
// waits (an init over its child) stays resident at the size of its binary. MADV_DONTNEED on the
// read-only mappings of the executable drops them from this process's page tables; the pages
// stay in the page cache, and what runs later faults back in the little it needs. Writable
// mappings (data, heap) are never touched: only read-only file pages are dropped, and those
// read back the same. It returns how many bytes it let go of.
func ShedExecutable() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	shed := 0
	for _, r := range readOnlyMappings(string(maps), exe) {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED); errno != 0 {
			return shed, errno
		}
		shed += int(r[1] - r[0])
	}
	return shed, nil
}

// readOnlyMappings are the [start, end) ranges of /proc/PID/maps that map path without write
// access.
func readOnlyMappings(maps, path string) [][2]uintptr {
	var out [][2]uintptr
	for line := range strings.Lines(maps) {
		f := strings.Fields(line)
		// address perms offset dev inode path
		if len(f) < 6 || strings.Join(f[5:], " ") != path || len(f[1]) < 2 || f[1][1] != '-' {
			continue
		}
		start, end, ok := strings.Cut(f[0], "-")
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if !ok || err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		out = append(out, [2]uintptr{uintptr(lo), uintptr(hi)})
	}
	return out
}

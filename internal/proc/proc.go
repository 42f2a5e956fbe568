// Package proc is narwhal's one reader of /proc and of the cgroup filesystem. Every path goes
// through an FS, whose root is "/" in production and a fixture tree in tests, and every parser
// is a pure function of a file's text. A supervision tick takes one Snapshot of the process
// table, which accept detection, memory checks, metrics and status then share: nothing scans
// /proc per worker.
package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FS reads a filesystem root's /proc and cgroup files.
type FS struct{ root string }

// Host is the machine's own filesystem.
var Host = FS{root: "/"}

// New returns an FS rooted at root: root/proc is its /proc, root/sys/fs/cgroup its cgroups.
func New(root string) FS { return FS{root: root} }

// path joins elem under the root; elem[0] is absolute as the process sees it ("/proc").
func (fs FS) path(elem ...string) string {
	return filepath.Join(append([]string{fs.root}, elem...)...)
}

// pidPath is /proc/PID/elem….
func (fs FS) pidPath(pid int, elem ...string) string {
	return fs.path(append([]string{"/proc", strconv.Itoa(pid)}, elem...)...)
}

func (fs FS) read(elem ...string) (string, error) {
	b, err := os.ReadFile(fs.path(elem...))
	return string(b), err
}

// Namespace is the text of the /proc/self/ns/KIND link ("pid:[4026532204]"), or "" without one.
func (fs FS) Namespace(kind string) string {
	link, _ := os.Readlink(fs.path("/proc/self/ns", kind))
	return link
}

// Stat is what narwhal reads from /proc/PID/stat.
type Stat struct {
	State        byte // R, S, D, Z (a zombie), …
	PPID, PGRP   int
	UTime, STime uint64 // clock ticks
	RSSPages     int64
}

// ParseStat reads /proc/PID/stat text. The command name in parentheses may itself hold spaces
// and parentheses, so fields are counted from the last ')': state is the first of them, then
// ppid f[1], pgrp f[2], utime f[11], stime f[12], rss f[21].
func ParseStat(stat string) (Stat, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return Stat{}, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 22 {
		return Stat{}, fmt.Errorf("stat: %d fields after the command name, want at least 22", len(f))
	}
	s := Stat{State: f[0][0]}
	var errs [5]error
	s.PPID, errs[0] = strconv.Atoi(f[1])
	s.PGRP, errs[1] = strconv.Atoi(f[2])
	s.UTime, errs[2] = strconv.ParseUint(f[11], 10, 64)
	s.STime, errs[3] = strconv.ParseUint(f[12], 10, 64)
	s.RSSPages, errs[4] = strconv.ParseInt(f[21], 10, 64)
	if err := errors.Join(errs[:]...); err != nil {
		return Stat{}, fmt.Errorf("stat: %w", err)
	}
	return s, nil
}

// ParsePPID reads only the parent PID from /proc/PID/stat text, which the shorter stat of a
// zombie still has.
func ParsePPID(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	return strconv.Atoi(f[1])
}

// PPID is the parent of pid, read now.
func (fs FS) PPID(pid int) (int, error) {
	s, err := fs.read("/proc", strconv.Itoa(pid), "stat")
	if err != nil {
		return 0, err
	}
	return ParsePPID(s)
}

// ClockTicks is USER_HZ, the unit of utime and stime: 100 on every Linux architecture Go runs on.
const ClockTicks = 100

// Snapshot is the process table read once: each process's stat, and who is whose child.
// /proc is not read atomically, so a process may have exited or appeared during the read;
// callers treat it as a view a few milliseconds wide.
type Snapshot struct {
	procs    map[int]Stat
	children map[int][]int
	page     int64
}

// Snapshot reads every /proc/PID/stat once.
func (fs FS) Snapshot() *Snapshot {
	s := &Snapshot{procs: map[int]Stat{}, children: map[int][]int{}, page: int64(os.Getpagesize())}
	entries, err := os.ReadDir(fs.path("/proc"))
	if err != nil {
		return s
	}
	// The supervisor takes a snapshot every 20 ms while a worker starts: one buffer, and three
	// system calls a process instead of os.ReadFile's five.
	buf := make([]byte, 4096) // a stat line is well under 1 KiB
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		n, err := readInto(fs.path("/proc", e.Name(), "stat"), buf)
		if err != nil {
			continue
		}
		st, err := ParseStat(string(buf[:n]))
		if err != nil {
			continue
		}
		s.procs[pid] = st
		s.children[st.PPID] = append(s.children[st.PPID], pid)
	}
	return s
}

// NewSnapshot is a snapshot of the given processes, for callers that have the figures already
// (tests of the code that reads snapshots).
func NewSnapshot(stats map[int]Stat) *Snapshot {
	s := &Snapshot{procs: map[int]Stat{}, children: map[int][]int{}, page: int64(os.Getpagesize())}
	for pid, st := range stats {
		s.procs[pid] = st
		s.children[st.PPID] = append(s.children[st.PPID], pid)
	}
	return s
}

// readInto reads the file at path, which must fit, into buf in one read, as /proc files are.
func readInto(path string, buf []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}

// Len is the number of processes seen.
func (s *Snapshot) Len() int { return len(s.procs) }

// Stat is pid's stat, if it was seen.
func (s *Snapshot) Stat(pid int) (Stat, bool) {
	st, ok := s.procs[pid]
	return st, ok
}

// Children lists pid's children, zombies included (their State is 'Z').
func (s *Snapshot) Children(pid int) []int { return s.children[pid] }

// Tree lists pid, if it was seen, and its descendants, breadth first. A PID reused while /proc
// was read could make a cycle, so each is visited once.
func (s *Snapshot) Tree(pid int) []int {
	if _, ok := s.procs[pid]; !ok {
		return nil
	}
	out := []int{pid}
	seen := map[int]bool{pid: true}
	for i := 0; i < len(out); i++ {
		for _, c := range s.children[out[i]] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// Descendants lists pid's descendants, without pid itself.
func (s *Snapshot) Descendants(pid int) []int {
	seen := map[int]bool{pid: true}
	var out []int
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		for _, c := range s.children[queue[0]] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// HasGroup reports whether any process seen is in process group pgid.
func (s *Snapshot) HasGroup(pgid int) bool {
	for _, st := range s.procs {
		if st.PGRP == pgid {
			return true
		}
	}
	return false
}

// Usage is resident memory and CPU time.
type Usage struct {
	RSSBytes   int64
	CPUSeconds float64
}

// Usage adds up the resident memory and CPU time of pid and its descendants.
func (s *Snapshot) Usage(pid int) Usage {
	var u Usage
	for _, p := range s.Tree(pid) {
		st := s.procs[p]
		u.RSSBytes += st.RSSPages * s.page
		u.CPUSeconds += st.CPUSeconds()
	}
	return u
}

// CPUSeconds is the process's own CPU time, user and system.
func (st Stat) CPUSeconds() float64 { return float64(st.UTime+st.STime) / ClockTicks }

// PeakRSS is the most resident memory pid has held (VmHWM), for the benchmarks.
func (fs FS) PeakRSS(pid int) (int64, bool) {
	b, err := os.ReadFile(fs.pidPath(pid, "status"))
	if err != nil {
		return 0, false
	}
	return parseStatusBytes(string(b), "VmHWM")
}

// parseStatusBytes reads a "Key:   123 kB" line of /proc/PID/status text, in bytes.
func parseStatusBytes(status, key string) (int64, bool) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

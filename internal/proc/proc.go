// Package proc reads the few things narwhal needs from /proc: parent PIDs and the tree of
// descendants. Parsing is pure and takes text; the readers take the /proc root as an argument
// so tests can point them at fixture trees.
package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ParsePPID reads the parent PID from the text of /proc/PID/stat. The command name in
// parentheses may itself hold spaces and parentheses, so fields are counted from the last ')'.
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

// PPID is the parent of pid, read from root (normally "/proc").
func PPID(root string, pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return ParsePPID(string(b))
}

// Descendants lists the processes whose chain of parents leads to pid, breadth first. /proc is
// not one snapshot: a PID reused while it is read could make a cycle, so each is visited once.
func Descendants(root string, pid int) ([]int, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := PPID(root, p); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	seen := map[int]bool{pid: true}
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		for _, c := range children[queue[0]] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out, nil
}

// Stat is what narwhal reads from /proc/PID/stat.
type Stat struct {
	PPID         int
	UTime, STime uint64 // clock ticks
	RSSPages     int64
}

// ParseStat reads /proc/PID/stat text: fields after the command name, counted from the last ')'
// (state is the first of them, so ppid is f[1], utime f[11], stime f[12], rss f[21]).
func ParseStat(stat string) (Stat, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return Stat{}, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 22 {
		return Stat{}, fmt.Errorf("stat: %d fields after the command name, want at least 22", len(f))
	}
	var s Stat
	var err error
	if s.PPID, err = strconv.Atoi(f[1]); err != nil {
		return Stat{}, fmt.Errorf("stat: ppid %q", f[1])
	}
	var err1, err2, err3 error
	s.UTime, err1 = strconv.ParseUint(f[11], 10, 64)
	s.STime, err2 = strconv.ParseUint(f[12], 10, 64)
	s.RSSPages, err3 = strconv.ParseInt(f[21], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Stat{}, fmt.Errorf("stat: %w", err)
	}
	return s, nil
}

// ClockTicks is USER_HZ, the unit of utime and stime: 100 on every Linux architecture Go runs on.
const ClockTicks = 100

// Usage is the resident memory and CPU time of a process and all its descendants.
type Usage struct {
	RSSBytes   int64
	CPUSeconds float64
}

// TreeUsage adds up the usage of pid and its descendants, read from root.
func TreeUsage(root string, pid int) Usage {
	tree, _ := Descendants(root, pid)
	var u Usage
	page := int64(os.Getpagesize())
	for _, p := range append([]int{pid}, tree...) {
		b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(p), "stat"))
		if err != nil {
			continue
		}
		if s, err := ParseStat(string(b)); err == nil {
			u.RSSBytes += s.RSSPages * page
			u.CPUSeconds += float64(s.UTime+s.STime) / ClockTicks
		}
	}
	return u
}

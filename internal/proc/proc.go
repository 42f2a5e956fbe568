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

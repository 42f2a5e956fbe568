package pid1

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// procRoot is where /proc is read; tests point it at fixture trees.
var procRoot = "/proc"

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
	pids, err := descendants(os.Getpid())
	if err != nil {
		return 0
	}
	n := 0
	for _, pid := range pids {
		if unix.Kill(pid, sig) == nil {
			n++
		}
	}
	return n
}

// descendants lists the processes whose chain of parents leads to root.
func descendants(root int) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue // it exited while we looked
		}
		ppid, err := parsePPID(string(stat))
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out, nil
}

// parsePPID reads the parent PID from the text of /proc/PID/stat. The command name in
// parentheses may itself hold spaces and parentheses, so fields are counted from the last ')'.
func parsePPID(stat string) (int, error) {
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

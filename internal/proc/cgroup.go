package proc

import (
	"bufio"
	"math"
	"path/filepath"
	"strconv"
	"strings"
)

// OnlineCPUs is the number of CPUs the machine has online; 0 if unreadable.
func (fs FS) OnlineCPUs() int {
	text, _ := fs.read("/sys/devices/system/cpu/online")
	return countCPUList(text)
}

// countCPUList counts the CPUs of a kernel CPU list such as "0-3,8,10-11"; 0 if unreadable.
func countCPUList(s string) int {
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return 0
		}
		n += b - a + 1
	}
	return n
}

// CPULimit is the CPU limit of this process's cgroup in CPUs (cgroup v2 cpu.max, or v1 CFS
// quota over period): the tightest along its path, since a parent's limit binds its children.
func (fs FS) CPULimit() (float64, bool) {
	cg, err := fs.read("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	mi, err := fs.read("/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	v2path, v1path := parseProcCgroup(cg)
	v2mount, v1mount := parseCgroupMounts(mi)
	best, found := math.Inf(1), false
	// Container runtimes usually hide the parents, so this mostly reads one file.
	if v2mount.point != "" && v2path != "" {
		for _, dir := range ancestors(v2mount, v2path) {
			if text, err := fs.read(dir, "cpu.max"); err == nil {
				if l, ok := parseCPUMax(text); ok && l < best {
					best, found = l, true
				}
			}
		}
	}
	if !found && v1mount.point != "" && v1path != "" {
		for _, dir := range ancestors(v1mount, v1path) {
			q, errQ := fs.read(dir, "cpu.cfs_quota_us")
			p, errP := fs.read(dir, "cpu.cfs_period_us")
			if errQ == nil && errP == nil {
				if l, ok := parseCFS(q, p); ok && l < best {
					best, found = l, true
				}
			}
		}
	}
	return best, found
}

type mount struct{ root, point string }

// ancestors lists the directories of cgroup path and its parents, as mounted.
func ancestors(m mount, path string) []string {
	rel, ok := strings.CutPrefix(path, m.root)
	// Under the mount's root means at a path boundary: /docker/ab is not a parent of /docker/abc.
	if !ok || (m.root != "/" && rel != "" && !strings.HasPrefix(rel, "/")) {
		rel = "/" // the cgroup is outside what is mounted (a cgroup namespace): use the mount
	}
	var dirs []string
	for rel = filepath.Clean("/" + rel); ; rel = filepath.Dir(rel) {
		dirs = append(dirs, filepath.Join(m.point, rel))
		if rel == "/" {
			return dirs
		}
	}
}

// parseProcCgroup reads /proc/self/cgroup: the v2 path ("0::/path") and the v1 path of the
// hierarchy holding the cpu controller ("4:cpu,cpuacct:/path").
func parseProcCgroup(s string) (v2, v1 string) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			v2 = f[2]
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "cpu" {
				v1 = f[2]
			}
		}
	}
	return v2, v1
}

// parseCgroupMounts reads /proc/self/mountinfo for the cgroup2 mount and the v1 cpu mount.
// A line: "36 35 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw".
func parseCgroupMounts(s string) (v2, v1 mount) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		m := mount{root: unescapeMount(f[3]), point: unescapeMount(f[4])}
		switch g[0] {
		case "cgroup2":
			if v2.point == "" {
				v2 = m
			}
		case "cgroup":
			for _, opt := range strings.Split(g[2], ",") {
				if opt == "cpu" && v1.point == "" {
					v1 = m
				}
			}
		}
	}
	return v2, v1
}

// unescapeMount decodes the octal escapes mountinfo uses for space, tab, newline and backslash.
var unescapeMount = strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace

// parseCPUMax reads cgroup v2 cpu.max: "max 100000" (no limit) or "150000 100000" (1.5 CPUs).
func parseCPUMax(s string) (float64, bool) {
	f := strings.Fields(s)
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	return ratio(f[0], f[1])
}

// parseCFS reads cgroup v1 cpu.cfs_quota_us (-1: no limit) and cpu.cfs_period_us.
func parseCFS(quota, period string) (float64, bool) {
	return ratio(strings.TrimSpace(quota), strings.TrimSpace(period))
}

func ratio(quota, period string) (float64, bool) {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false
	}
	return q / p, true
}

// HasCapability reports whether this process's effective capabilities hold capability n.
func (fs FS) HasCapability(n uint) bool {
	text, err := fs.read("/proc/self/status")
	if err != nil {
		return false
	}
	return parseCapEff(text)&(1<<n) != 0
}

// parseCapEff reads the effective capability mask from /proc/PID/status text; 0 if absent.
func parseCapEff(status string) uint64 {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return mask
		}
	}
	return 0
}

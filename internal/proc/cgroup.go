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
	v2, v1 := fs.cgroupDirs("cpu")
	best, found := math.Inf(1), false
	// Container runtimes usually hide the parents, so this mostly reads one file.
	for _, dir := range v2 {
		if text, err := fs.read(dir, "cpu.max"); err == nil {
			if l, ok := parseCPUMax(text); ok && l < best {
				best, found = l, true
			}
		}
	}
	if !found {
		for _, dir := range v1 {
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

// cgroupDirs are the directories of this process's cgroup and of its parents, its own first:
// in the v2 hierarchy, and in the v1 hierarchy that holds controller.
func (fs FS) cgroupDirs(controller string) (v2, v1 []string) {
	cg, err1 := fs.read("/proc/self/cgroup")
	mi, err2 := fs.read("/proc/self/mountinfo")
	if err1 != nil || err2 != nil {
		return nil, nil
	}
	v2path, v1path := parseProcCgroup(cg, controller)
	v2mount, v1mount := parseCgroupMounts(mi, controller)
	if v2mount.point != "" && v2path != "" {
		v2 = ancestors(v2mount, v2path)
	}
	if v1mount.point != "" && v1path != "" {
		v1 = ancestors(v1mount, v1path)
	}
	return v2, v1
}

// Memory is the container's memory as the kubelet sees it: the cgroup's limit (0 when it has
// none) and its working set, the usage less inactive file cache, which the kubelet evicts by.
type Memory struct {
	Limit, WorkingSet int64
}

// CgroupMemory reads Memory from cgroup v2 (memory.max, memory.current, memory.stat) or, where
// the memory controller is v1's, from memory.limit_in_bytes, memory.usage_in_bytes and
// memory.stat. The limit is the tightest along the path, as for the CPU.
func (fs FS) CgroupMemory() (Memory, bool) {
	v2, v1 := fs.cgroupDirs("memory")
	for _, h := range []struct {
		dirs                   []string
		limit, usage, inactive string
	}{
		{v2, "memory.max", "memory.current", "inactive_file"},
		{v1, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"},
	} {
		if len(h.dirs) == 0 {
			continue
		}
		usage, err := fs.read(h.dirs[0], h.usage)
		if err != nil {
			continue // no memory controller in this hierarchy
		}
		stat, _ := fs.read(h.dirs[0], "memory.stat")
		var m Memory
		if used, err := strconv.ParseInt(strings.TrimSpace(usage), 10, 64); err == nil {
			m.WorkingSet = max(0, used-statValue(stat, h.inactive))
		}
		for _, dir := range h.dirs {
			if text, err := fs.read(dir, h.limit); err == nil {
				if l := parseMemoryLimit(text); l > 0 && (m.Limit == 0 || l < m.Limit) {
					m.Limit = l
				}
			}
		}
		return m, true
	}
	return Memory{}, false
}

// OOMKills is how many processes the kernel's OOM killer has killed in this process's cgroup:
// oom_kill in v2 memory.events, or in v1 memory.oom_control.
func (fs FS) OOMKills() (uint64, bool) {
	v2, v1 := fs.cgroupDirs("memory")
	for _, f := range []struct {
		dirs []string
		file string
	}{{v2, "memory.events"}, {v1, "memory.oom_control"}} {
		if len(f.dirs) == 0 {
			continue
		}
		if text, err := fs.read(f.dirs[0], f.file); err == nil {
			return uint64(statValue(text, "oom_kill")), true
		}
	}
	return 0, false
}

// OOMGroup reports whether the cgroup's memory.oom.group is set (cgroup v2; Kubernetes 1.28 and
// later): then one OOM kill ends every process in the container, narwhal included.
func (fs FS) OOMGroup() bool {
	v2, _ := fs.cgroupDirs("memory")
	if len(v2) == 0 {
		return false
	}
	text, err := fs.read(v2[0], "memory.oom.group")
	return err == nil && strings.TrimSpace(text) == "1"
}

// parseMemoryLimit reads memory.max ("max" for none) or memory.limit_in_bytes (a page-rounded
// 2^63 for none); 0 means no limit.
func parseMemoryLimit(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0
	}
	return n
}

// statValue is the value of key in memory.stat text ("inactive_file 4096"), 0 if absent.
func statValue(stat, key string) int64 {
	for _, line := range strings.Split(stat, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
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
// hierarchy holding controller ("4:cpu,cpuacct:/path").
func parseProcCgroup(s, controller string) (v2, v1 string) {
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
			if c == controller {
				v1 = f[2]
			}
		}
	}
	return v2, v1
}

// parseCgroupMounts reads /proc/self/mountinfo for the cgroup2 mount and the v1 mount of
// controller. A line: "36 35 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw".
func parseCgroupMounts(s, controller string) (v2, v1 mount) {
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
				if opt == controller && v1.point == "" {
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

// ListenOverflows is the kernel's count of connections dropped because an accept queue was
// full (TcpExt ListenOverflows in /proc/net/netstat), in this network namespace.
func (fs FS) ListenOverflows() (uint64, bool) {
	text, err := fs.read("/proc/net/netstat")
	if err != nil {
		return 0, false
	}
	return parseNetstat(text, "TcpExt", "ListenOverflows")
}

// parseNetstat reads a value of /proc/net/netstat, where each group is a line of names and a
// line of values: "TcpExt: SyncookiesSent … ListenOverflows …" then "TcpExt: 0 … 7 …".
func parseNetstat(s, group, name string) (uint64, bool) {
	var names []string
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != group+":" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == name && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				return v, err == nil
			}
		}
		return 0, false
	}
	return 0, false
}

// Container is what narwhal reads of its container as a whole, for the metrics.
type Container struct {
	Memory          Memory
	MemoryKnown     bool
	ListenOverflows uint64
	OverflowsKnown  bool
}

// Container reads the container's memory and the accept-queue overflows.
func (fs FS) Container() Container {
	var c Container
	c.Memory, c.MemoryKnown = fs.CgroupMemory()
	c.ListenOverflows, c.OverflowsKnown = fs.ListenOverflows()
	return c
}

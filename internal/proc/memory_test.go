package proc

import (
	"path/filepath"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"max\n": 0, "536870912\n": 512 << 20, "9223372036854771712\n": 0, "0\n": 0, "garbage": 0,
	} {
		if got := parseMemoryLimit(in); got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestParseNetstat(t *testing.T) {
	const netstat = `TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops
TcpExt: 0 0 17 18
IpExt: InNoRoutes ListenOverflows
IpExt: 1 99
`
	if v, ok := parseNetstat(netstat, "TcpExt", "ListenOverflows"); !ok || v != 17 {
		t.Errorf("ListenOverflows = %d, %v; want 17, true", v, ok)
	}
	if _, ok := parseNetstat(netstat, "TcpExt", "NoSuchCounter"); ok {
		t.Error("a counter that is not there was found")
	}
	if _, ok := parseNetstat("TcpExt: ListenOverflows\n", "TcpExt", "ListenOverflows"); ok {
		t.Error("a header without values gave a value")
	}
}

// TestCgroupMemory: the working set is the usage less inactive file cache, and the limit is
// the tightest along the path, on cgroup v2, on v1, and on a hybrid machine where only v1 has
// the memory controller.
func TestCgroupMemory(t *testing.T) {
	v2 := map[string]string{
		"proc/self/cgroup":                               "0::/kubepods/pod1/ctr\n",
		"proc/self/mountinfo":                            "36 35 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
		"sys/fs/cgroup/kubepods/pod1/ctr/memory.max":     "max\n",
		"sys/fs/cgroup/kubepods/pod1/ctr/memory.current": "300000000\n",
		"sys/fs/cgroup/kubepods/pod1/ctr/memory.stat":    "anon 200000000\ninactive_file 100000000\nactive_file 5\n",
		"sys/fs/cgroup/kubepods/pod1/memory.max":         "536870912\n",
		"sys/fs/cgroup/kubepods/memory.max":              "1073741824\n",
	}
	v1 := map[string]string{
		"proc/self/cgroup":                           "4:memory:/docker/abc\n1:cpu:/docker/abc\n0::/\n",
		"proc/self/mountinfo":                        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
		"sys/fs/cgroup/memory/memory.limit_in_bytes": "268435456\n",
		"sys/fs/cgroup/memory/memory.usage_in_bytes": "150000000\n",
		"sys/fs/cgroup/memory/memory.stat":           "cache 60000000\ninactive_file 1\ntotal_inactive_file 50000000\n",
	}
	hybrid := map[string]string{
		"proc/self/cgroup": "4:memory:/\n0::/\n",
		"proc/self/mountinfo": "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n" +
			"35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
		"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		"sys/fs/cgroup/memory/memory.usage_in_bytes": "4096\n",
		"sys/fs/cgroup/memory/memory.stat":           "total_inactive_file 8192\n",
	}
	tests := []struct {
		name  string
		files map[string]string
		want  Memory
	}{
		{"v2, limit from the pod", v2, Memory{Limit: 512 << 20, WorkingSet: 200000000}},
		{"v1", v1, Memory{Limit: 256 << 20, WorkingSet: 100000000}},
		{"hybrid, v1 memory, no limit, cache above usage", hybrid, Memory{Limit: 0, WorkingSet: 0}},
	}
	for _, tc := range tests {
		root := t.TempDir()
		for path, text := range tc.files {
			writeFile(t, filepath.Join(root, path), text)
		}
		got, ok := New(root).CgroupMemory()
		if !ok || got != tc.want {
			t.Errorf("%s: CgroupMemory = %+v, %v; want %+v, true", tc.name, got, ok, tc.want)
		}
	}
	if _, ok := New(t.TempDir()).CgroupMemory(); ok {
		t.Error("CgroupMemory without /proc said ok")
	}
}

// TestHostFigures: this machine has a memory controller and a TCP stack to read.
func TestHostFigures(t *testing.T) {
	if m, ok := Host.CgroupMemory(); !ok || m.WorkingSet <= 0 {
		t.Errorf("Host.CgroupMemory = %+v, %v; want a working set", m, ok)
	}
	if _, ok := Host.ListenOverflows(); !ok {
		t.Error("Host.ListenOverflows not readable")
	}
}

func TestOOMKills(t *testing.T) {
	v2 := map[string]string{
		"proc/self/cgroup":                   "0::/ctr\n",
		"proc/self/mountinfo":                "36 35 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
		"sys/fs/cgroup/ctr/memory.events":    "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n",
		"sys/fs/cgroup/ctr/memory.oom.group": "1\n",
	}
	v1 := map[string]string{
		"proc/self/cgroup":                        "4:memory:/\n",
		"proc/self/mountinfo":                     "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
		"sys/fs/cgroup/memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n",
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		kills uint64
		group bool
	}{{"v2", v2, 2, true}, {"v1", v1, 5, false}} {
		root := t.TempDir()
		for path, text := range tc.files {
			writeFile(t, filepath.Join(root, path), text)
		}
		fs := New(root)
		if n, ok := fs.OOMKills(); !ok || n != tc.kills {
			t.Errorf("%s: OOMKills = %d, %v; want %d", tc.name, n, ok, tc.kills)
		}
		if g := fs.OOMGroup(); g != tc.group {
			t.Errorf("%s: OOMGroup = %v, want %v", tc.name, g, tc.group)
		}
	}
}

package proc

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestParseProcCgroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		v2, v1 string
	}{
		{"v2", "0::/kubepods/pod1/ctr\n", "/kubepods/pod1/ctr", ""},
		{"v2 in a cgroup namespace", "0::/\n", "/", ""},
		{"v1", `12:pids:/docker/abc
11:memory:/docker/abc
5:cpuset:/docker/abc
4:cpu,cpuacct:/docker/abc
3:name=systemd:/docker/abc
`, "", "/docker/abc"},
		{"v1 cpu and cpuacct apart", "2:cpuacct:/acct\n1:cpu:/docker/abc\n", "", "/docker/abc"},
		{"v1 cpuacct or cpuset is not cpu", "2:cpuacct:/acct\n3:cpuset:/set\n", "", ""},
		{"hybrid", `9:name=systemd:/user.slice
4:cpu,cpuacct:/user.slice/app
3:cpuset:/
0::/user.slice/user-1000.slice/session-2.scope
`, "/user.slice/user-1000.slice/session-2.scope", "/user.slice/app"},
		{"this machine", `9:name=systemd:/
8:pids:/
4:memory:/process_api/ad033918844f64674d5209f319ccd7ac
2:cpuacct:/
1:cpu:/
0::/
`, "/", "/"},
		{"path holding ':'", "0::/a:b\n", "/a:b", ""},
		{"0 with a controller is not v2", "0:cpu:/x\n", "", "/x"},
		{"malformed lines", "garbage\n0:/x\n", "", ""},
		{"empty", "", "", ""},
	}
	for _, tc := range tests {
		v2, v1 := parseProcCgroup(tc.in, "cpu")
		if v2 != tc.v2 || v1 != tc.v1 {
			t.Errorf("%s: parseProcCgroup(%q) = %q, %q, want %q, %q", tc.name, tc.in, v2, v1, tc.v2, tc.v1)
		}
	}
}

func TestParseCgroupMounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		v2, v1 mount
	}{
		{"v2 with an optional field", "36 35 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
			mount{root: "/", point: "/sys/fs/cgroup"}, mount{}},
		{"v2 in a container", `1062 1057 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup ro,nsdelegate
`, mount{root: "/", point: "/sys/fs/cgroup"}, mount{}},
		{"v1 docker, two optional fields", `1058 1057 0:62 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
1060 1058 0:31 /docker/abc /sys/fs/cgroup/cpuset ro,nosuid,nodev,noexec,relatime master:10 shared:12 - cgroup cgroup rw,cpuset
1061 1058 0:32 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:11 shared:13 - cgroup cgroup rw,cpu,cpuacct
`, mount{}, mount{root: "/docker/abc", point: "/sys/fs/cgroup/cpu,cpuacct"}},
		// This machine: cpu and cpuacct mounted apart, plus a cgroup2 at unified.
		{"hybrid", `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`, mount{root: "/", point: "/sys/fs/cgroup/unified"}, mount{root: "/", point: "/sys/fs/cgroup/cpu"}},
		{"first of each wins", `41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
42 31 0:38 / /mnt/other rw - cgroup2 cgroup2 rw
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
43 31 0:29 / /mnt/cpu rw - cgroup cgroup rw,cpu
`, mount{root: "/", point: "/sys/fs/cgroup/unified"}, mount{root: "/", point: "/sys/fs/cgroup/cpu"}},
		{"other file systems named cgroup", `50 31 0:40 / /mnt/a rw - tmpfs cgroup rw,cpu
51 31 0:41 / /mnt/b rw - cgroupfs cgroup2 rw
`, mount{}, mount{}},
		{"no separator", "36 35 0:30 / /sys/fs/cgroup rw,nosuid cgroup2 cgroup2 rw\n", mount{}, mount{}},
		{"too few fields", "36 35 / - cgroup2 cgroup2 rw\n36 35 0:30 / /sys/fs/cgroup rw - cgroup2\n", mount{}, mount{}},
		{"empty", "", mount{}, mount{}},
	}
	for _, tc := range tests {
		v2, v1 := parseCgroupMounts(tc.in, "cpu")
		if v2 != tc.v2 || v1 != tc.v1 {
			t.Errorf("%s: parseCgroupMounts = %+v, %+v, want %+v, %+v", tc.name, v2, v1, tc.v2, tc.v1)
		}
	}
}

func TestParseCPUMax(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"max 100000\n", 0, false},
		{"max\n", 0, false},
		{"150000 100000\n", 1.5, true},
		{"50000 100000\n", 0.5, true},
		{"200000 100000", 2, true},
		{"100000 100000\n", 1, true},
		{"1000 1000\n", 1, true},
		{"0 100000\n", 0, false},
		{"-1 100000\n", 0, false},
		{"100000 0\n", 0, false},
		{"150000\n", 0, false},
		{"150000 100000 1\n", 0, false},
		{"abc 100000\n", 0, false},
		{"150000 def\n", 0, false},
		{"garbage", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseCPUMax(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseCPUMax(%q) = %v, %v, want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseCFS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		quota, period string
		want          float64
		ok            bool
	}{
		{"-1\n", "100000\n", 0, false},
		{"200000\n", "100000\n", 2, true},
		{"50000\n", "100000\n", 0.5, true},
		{"150000", "100000", 1.5, true},
		{"0\n", "100000\n", 0, false},
		{"200000\n", "0\n", 0, false},
		{"200000\n", "", 0, false},
		{"", "100000\n", 0, false},
		{"lots\n", "100000\n", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseCFS(tc.quota, tc.period)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseCFS(%q, %q) = %v, %v, want %v, %v", tc.quota, tc.period, got, ok, tc.want, tc.ok)
		}
	}
}

func TestAncestors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    mount
		path string
		want []string
	}{
		{"from the root", mount{root: "/", point: "/sys/fs/cgroup"}, "/kubepods/pod1/ctr",
			[]string{"/sys/fs/cgroup/kubepods/pod1/ctr", "/sys/fs/cgroup/kubepods/pod1", "/sys/fs/cgroup/kubepods", "/sys/fs/cgroup"}},
		{"the root itself", mount{root: "/", point: "/sys/fs/cgroup"}, "/", []string{"/sys/fs/cgroup"}},
		{"mounted at the cgroup (docker v1)", mount{root: "/docker/abc", point: "/sys/fs/cgroup/cpu,cpuacct"}, "/docker/abc",
			[]string{"/sys/fs/cgroup/cpu,cpuacct"}},
		{"below the mounted root", mount{root: "/docker/abc", point: "/sys/fs/cgroup/cpu"}, "/docker/abc/sub",
			[]string{"/sys/fs/cgroup/cpu/sub", "/sys/fs/cgroup/cpu"}},
		{"outside the mounted root", mount{root: "/docker/abc", point: "/sys/fs/cgroup/cpu"}, "/kubepods/x",
			[]string{"/sys/fs/cgroup/cpu"}},
		{"trailing slash", mount{root: "/", point: "/sys/fs/cgroup"}, "/a/b/",
			[]string{"/sys/fs/cgroup/a/b", "/sys/fs/cgroup/a", "/sys/fs/cgroup"}},
		{"dot-dot cannot climb above the mount", mount{root: "/", point: "/sys/fs/cgroup"}, "/../../etc",
			[]string{"/sys/fs/cgroup/etc", "/sys/fs/cgroup"}},
	}
	for _, tc := range tests {
		if got := ancestors(tc.m, tc.path); !slices.Equal(got, tc.want) {
			t.Errorf("%s: ancestors(%+v, %q) = %q, want %q", tc.name, tc.m, tc.path, got, tc.want)
		}
	}
}

const (
	mountinfoV2 = "36 35 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
	mountinfoV1 = `25 20 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
29 25 0:26 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpuset
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
`
	mountinfoHybrid = mountinfoV1 + "41 25 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:12 - cgroup2 cgroup2 rw\n"
)

func TestCgroupCPULimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string // path under the root -> text
		want  float64
		ok    bool
	}{
		{"v2 1.5 CPUs", map[string]string{
			"proc/self/cgroup":                              "0::/kubepods/pod1/ctr\n",
			"proc/self/mountinfo":                           mountinfoV2,
			"sys/fs/cgroup/kubepods/pod1/ctr/cpu.max":       "150000 100000\n",
			"sys/fs/cgroup/kubepods/pod1/cpu.max":           "max 100000\n",
			"sys/fs/cgroup/kubepods/cpu.max":                "max 100000\n",
			"sys/fs/cgroup/kubepods/pod1/ctr/cpu.max.burst": "0\n",
		}, 1.5, true},
		{"v2 tighter parent", map[string]string{
			"proc/self/cgroup":                        "0::/kubepods/pod1/ctr\n",
			"proc/self/mountinfo":                     mountinfoV2,
			"sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "200000 100000\n",
			"sys/fs/cgroup/kubepods/pod1/cpu.max":     "50000 100000\n",
			"sys/fs/cgroup/kubepods/cpu.max":          "400000 100000\n",
		}, 0.5, true},
		{"v2 limit only on a parent", map[string]string{
			"proc/self/cgroup":                        "0::/kubepods/pod1/ctr\n",
			"proc/self/mountinfo":                     mountinfoV2,
			"sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000\n",
			"sys/fs/cgroup/kubepods/pod1/cpu.max":     "300000 100000\n",
		}, 3, true},
		{"v2 max", map[string]string{
			"proc/self/cgroup":                        "0::/kubepods/pod1/ctr\n",
			"proc/self/mountinfo":                     mountinfoV2,
			"sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000\n",
			"sys/fs/cgroup/kubepods/pod1/cpu.max":     "max 100000\n",
		}, 0, false},
		{"v2 in a cgroup namespace", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"proc/self/mountinfo":   mountinfoV2,
			"sys/fs/cgroup/cpu.max": "250000 100000\n",
		}, 2.5, true},
		{"v1 quota 50000/100000", map[string]string{
			"proc/self/cgroup":                            "12:pids:/docker/abc\n5:cpuset:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
			"proc/self/mountinfo":                         "1061 1058 0:32 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:11 - cgroup cgroup rw,cpu,cpuacct\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "50000\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
		}, 0.5, true},
		{"v1 quota on the cgroup's own directory", map[string]string{
			"proc/self/cgroup":    "4:cpu,cpuacct:/docker/abc\n",
			"proc/self/mountinfo": mountinfoV1,
			"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us":  "200000\n",
			"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
			"sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us":      "-1\n",
			"sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us":     "100000\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":             "-1\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us":            "100000\n",
		}, 2, true},
		{"v1 no quota", map[string]string{
			"proc/self/cgroup":    "4:cpu,cpuacct:/docker/abc\n",
			"proc/self/mountinfo": mountinfoV1,
			"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us":  "-1\n",
			"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
		}, 0, false},
		{"v1 quota without period", map[string]string{
			"proc/self/cgroup":    "4:cpu,cpuacct:/docker/abc\n",
			"proc/self/mountinfo": mountinfoV1,
			"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
		}, 0, false},
		// The unified hierarchy holds no cpu controller: the limit is v1's.
		{"hybrid", map[string]string{
			"proc/self/cgroup":                                "4:cpu,cpuacct:/app\n1:name=systemd:/app\n0::/app\n",
			"proc/self/mountinfo":                             mountinfoHybrid,
			"sys/fs/cgroup/unified/app/cgroup.procs":          "1\n",
			"sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_quota_us":  "150000\n",
			"sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_period_us": "100000\n",
		}, 1.5, true},
		{"v2 limit wins over v1", map[string]string{
			"proc/self/cgroup":                                "4:cpu,cpuacct:/app\n0::/app\n",
			"proc/self/mountinfo":                             mountinfoHybrid,
			"sys/fs/cgroup/unified/app/cpu.max":               "300000 100000\n",
			"sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_quota_us":  "100000\n",
			"sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_period_us": "100000\n",
		}, 3, true},
		{"cpu.max but no cgroup2 mount", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"proc/self/mountinfo":   "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n",
			"sys/fs/cgroup/cpu.max": "150000 100000\n",
		}, 0, false},
		{"no mountinfo", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"sys/fs/cgroup/cpu.max": "150000 100000\n",
		}, 0, false},
		{"no /proc/self/cgroup", map[string]string{
			"proc/self/mountinfo":   mountinfoV2,
			"sys/fs/cgroup/cpu.max": "150000 100000\n",
		}, 0, false},
		{"no cgroup files", map[string]string{}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			for path, text := range tc.files {
				writeFile(t, filepath.Join(root, path), text)
			}
			got, ok := New(root).CPULimit()
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("CPULimit = %v, %v, want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestAncestorsAtPathBoundary(t *testing.T) {
	for _, tc := range []struct {
		m    mount
		path string
		want []string
	}{
		{mount{root: "/docker/ab", point: "/sys/fs/cgroup/cpu"}, "/docker/abc", []string{"/sys/fs/cgroup/cpu"}},
		{mount{root: "/kube", point: "/sys/fs/cgroup"}, "/kubepods/pod1/ctr", []string{"/sys/fs/cgroup"}},
		{mount{root: "/docker/ab", point: "/m"}, "/docker/ab/x", []string{"/m/x", "/m"}},
	} {
		if got := ancestors(tc.m, tc.path); !slices.Equal(got, tc.want) {
			t.Errorf("ancestors(%+v, %q) = %v, want %v", tc.m, tc.path, got, tc.want)
		}
	}
	_, v1 := parseCgroupMounts(`30 25 0:26 / /sys/fs/my\040cgroup rw - cgroup cgroup rw,cpu`, "cpu")
	if v1.point != "/sys/fs/my cgroup" {
		t.Errorf("mount point %q, want the octal escape decoded", v1.point)
	}
}

func TestCountCPUList(t *testing.T) {
	for s, want := range map[string]int{"0": 1, "0-1\n": 2, "0-3,8,10-11": 7, "": 0, "x": 0, "3-1": 0} {
		if got := countCPUList(s); got != want {
			t.Errorf("countCPUList(%q) = %d, want %d", s, got, want)
		}
	}
}

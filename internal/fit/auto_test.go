package fit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/narwhal-init/narwhal/internal/proc"
)

// TestAutoWorkers: the CPU quota decides; without one, NARWHAL_CPUS (the CPU request); without
// it, a cpuset narrower than the machine; else 1, never the host's count.
func TestAutoWorkers(t *testing.T) {
	write := func(root string, files map[string]string) proc.FS {
		for path, text := range files {
			p := filepath.Join(root, path)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return proc.New(root)
	}
	v2 := func(max string) map[string]string {
		return map[string]string{
			"proc/self/cgroup":              "0::/\n",
			"proc/self/mountinfo":           "36 35 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			"sys/fs/cgroup/cpu.max":         max,
			"sys/devices/system/cpu/online": "0-7\n",
		}
	}
	tests := []struct {
		name         string
		files        map[string]string
		cpus, usable int
		want         int
		why          string
	}{
		{"quota over request", v2("150000 100000\n"), 4, 8, 2, "the container's CPU quota"},
		{"request without quota", v2("max 100000\n"), 3, 8, 3, "NARWHAL_CPUS"},
		{"cpuset without either", v2("max 100000\n"), 0, 2, 2, "the container's cpuset"},
		{"nothing", v2("max 100000\n"), 0, 8, 1, "no CPU limit found: set NARWHAL_WORKERS, NARWHAL_CPUS or a CPU limit"},
	}
	for _, tc := range tests {
		n, why := autoWorkers(write(t.TempDir(), tc.files), tc.cpus, tc.usable)
		if n != tc.want || why != tc.why {
			t.Errorf("%s: autoWorkers = %d (%s), want %d (%s)", tc.name, n, why, tc.want, tc.why)
		}
	}
}

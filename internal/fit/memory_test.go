package fit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/internal/proc"
)

// TestMemoryLimitsNeedALimit: shares resolve against the cgroup's limit, and a share of no
// limit is a configuration error naming the variable.
func TestMemoryLimitsNeedALimit(t *testing.T) {
	limited, unlimited := t.TempDir(), t.TempDir()
	for root, limit := range map[string]string{limited: "1073741824\n", unlimited: "max\n"} {
		for path, text := range map[string]string{
			"proc/self/cgroup":             "0::/\n",
			"proc/self/mountinfo":          "36 35 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			"sys/fs/cgroup/memory.max":     limit,
			"sys/fs/cgroup/memory.current": "1000\n",
		} {
			p := filepath.Join(root, path)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(text), 0o644)
		}
	}
	var cfg config.Config
	if err := cfg.MaxMemory.Decode("25%"); err != nil {
		t.Fatal(err)
	}
	cfg.MemoryBudget = 0.9
	max, budget, err := MemoryLimits(&cfg, proc.New(limited))
	if err != nil || max != 256<<20 || budget != 966367641 {
		t.Errorf("MemoryLimits of 1 GiB = %d, %d, %v; want 256 MiB and 90%%", max, budget, err)
	}
	if _, _, err := MemoryLimits(&cfg, proc.New(unlimited)); err == nil || !strings.Contains(err.Error(), "NARWHAL_MAX_MEMORY") {
		t.Errorf("MemoryLimits without a limit: %v, want an error naming NARWHAL_MAX_MEMORY", err)
	}
}

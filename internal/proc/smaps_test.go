package proc

import (
	"os"
	"path/filepath"
	"testing"
)

const rollup = `55e2853fd000-7fffc715f000 ---p 00000000 00:00 0                          [rollup]
Rss:                1704 kB
Pss:                 294 kB
Pss_Dirty:           112 kB
Shared_Clean:       1544 kB
KSM:                   0 kB
SwapPss:               0 kB
`

func TestParseRollup(t *testing.T) {
	if pss, ok := ParseRollup(rollup); !ok || pss != 294<<10 {
		t.Errorf("ParseRollup = %d, %v; want %d", pss, ok, 294<<10)
	}
	for _, bad := range []string{"", "Rss: 10 kB\n", "Pss: lots kB\n", "Pss: -4 kB\n"} {
		if _, ok := ParseRollup(bad); ok {
			t.Errorf("ParseRollup(%q) parsed", bad)
		}
	}
}

// TestShares: the proportional memory of several processes adds up, merged pages count in
// pages of the machine's size, and a process whose files cannot be read adds nothing.
func TestShares(t *testing.T) {
	root := t.TempDir()
	for pid, files := range map[string]map[string]string{
		"10": {"smaps_rollup": rollup, "ksm_merging_pages": "3\n"},
		"11": {"smaps_rollup": "Pss: 706 kB\n", "ksm_merging_pages": "1\n"},
	} {
		for name, text := range files {
			p := filepath.Join(root, "proc", pid, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(text), 0o644)
		}
	}
	s := New(root).Shares([]int{10, 11, 12})
	if !s.Known || s.Proportional != 1000<<10 || s.Merged != int64(4*os.Getpagesize()) {
		t.Errorf("Shares = %+v; want 1000 KiB proportional, 4 pages merged, known", s)
	}
	if s := New(root).Shares([]int{12}); s.Known || s.Proportional != 0 {
		t.Errorf("Shares of a process without files = %+v; want nothing known", s)
	}
}

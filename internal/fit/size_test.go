package fit

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/narwhal-init/narwhal/config"
)

// TestSizeChecksMinReady: NARWHAL_MIN_READY is checked against the most workers the pool can
// reach on this machine (an auto bound resolved, MAX for a range), since /readyz would otherwise
// answer 503 for ever; the error says what auto came to, and why.
func TestSizeChecksMinReady(t *testing.T) {
	const why = "no CPU limit found"
	auto := func(n int) func(int) (int, string) {
		return func(int) (int, string) { return n, why }
	}
	tests := []struct {
		workers  string
		auto     int
		minReady int
		lo, hi   int
		says     string // in the error; "" for none
	}{
		{"auto", 1, 1, 1, 1, ""},
		{"auto", 1, 2, 0, 0, "want at most 1, the most workers NARWHAL_WORKERS=auto can reach here (" + why + ")"},
		{"auto", 4, 4, 4, 4, ""},
		{"1-auto", 1, 2, 0, 0, "want at most 1, the most workers NARWHAL_WORKERS=1-auto can reach here"},
		{"2-auto", 1, 2, 2, 2, ""}, // auto yields to the given MIN
		{"2-auto", 1, 3, 0, 0, "want at most 2"},
		{"2-auto", 4, 3, 2, 4, ""},
		{"auto-auto", 2, 3, 0, 0, "want at most 2"},
		{"auto-8", 2, 8, 2, 8, ""},
		{"2-8", 1, 3, 2, 8, ""},
		{"3", 1, 3, 3, 3, ""},
		{"3", 1, 0, 3, 3, ""},
	}
	for _, tc := range tests {
		var cfg config.Config
		if err := cfg.Workers.Decode(tc.workers); err != nil {
			t.Fatal(err)
		}
		cfg.MinReady = config.Int(tc.minReady)
		lo, hi, _, err := size(&cfg, auto(tc.auto))
		name := "NARWHAL_WORKERS=" + tc.workers + " NARWHAL_MIN_READY=" + strconv.Itoa(tc.minReady)
		if tc.says == "" {
			if err != nil || lo != tc.lo || hi != tc.hi {
				t.Errorf("%s, auto %d: size = %d-%d, %v; want %d-%d", name, tc.auto, lo, hi, err, tc.lo, tc.hi)
			}
			continue
		}
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Variable != "NARWHAL_MIN_READY" || ce.Value != strconv.Itoa(tc.minReady) ||
			!strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s, auto %d: error %v, want a *config.Error naming NARWHAL_MIN_READY and saying %q", name, tc.auto, err, tc.says)
		}
	}
}

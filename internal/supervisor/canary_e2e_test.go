//go:build e2e

package supervisor_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/loadgen"
)

// releasePool runs the Go example as a release that the test can break: once the file it
// returns exists, new workers crash a second after they begin to serve.
func releasePool(t *testing.T, env ...string) (p *e2e.Proc, url, broken string) {
	t.Helper()
	broken = filepath.Join(t.TempDir(), "broken")
	script := `if [ -e "$1" ]; then export CRASH_AFTER=1s; fi; exec "$2"`
	p, url = pool(t, append([]string{"NARWHAL_WORKERS=3"}, env...),
		"sh", "-c", script, "release", broken, e2e.Example(t, "go")[0])
	waitEvents(t, p, "ready", 3)
	return p, url, broken
}

// TestCanaryAbortsBadRelease: a release whose workers serve, then crash a second later, goes no
// further than its canary: the rollout aborts with reason canary, every old worker serves on,
// and at most the requests in flight on the canary fail.
func TestCanaryAbortsBadRelease(t *testing.T) {
	e2e.Require(t)
	p, url, broken := releasePool(t, "NARWHAL_ROLLOUT_CANARY=5s")
	before := map[int]bool{}
	for i := 0; i < 100 && len(before) < 3; i++ {
		before[getHello(t, url).PID] = true
	}
	os.WriteFile(broken, nil, 0o644)

	const clients = 4
	load := loadgen.Start(url, clients/2, clients/2)
	p.Signal(syscall.SIGHUP)
	waitEvents(t, p, "rollout_aborted", 1)
	load.Stop()

	aborted := p.WaitStderr(`"event":"rollout_aborted"`, timeout)
	if !strings.Contains(aborted, `"reason":"canary"`) {
		t.Errorf("abort logged without reason canary: %s", aborted)
	}
	if n := e2e.Count(p.Stderr(), `"event":"start"`); n != 4 {
		t.Errorf("%d workers started, want the 3 first and one canary", n)
	}
	for i := 0; i < 50; i++ {
		if h := getHello(t, url); !before[h.PID] {
			t.Fatalf("after the abort worker %d (generation %s) answered, want one of the old %v", h.PID, h.Generation, before)
		}
	}
	if f := load.Failed.Load(); f > clients {
		t.Errorf("%d of %d requests failed, more than the %d that can be in flight on the canary:\n%s", f, load.Sent.Load(), clients, load.Errors())
	}
	t.Logf("bad release behind a canary: %d requests, %d failed", load.Sent.Load(), load.Failed.Load())
}

// TestCanaryHealthyRelease: a healthy release completes, no sooner than the canary's watch, and
// fails no request.
func TestCanaryHealthyRelease(t *testing.T) {
	e2e.Require(t)
	const canary = 2 * time.Second
	p, url, _ := releasePool(t, "NARWHAL_ROLLOUT_CANARY="+canary.String())
	load := loadgen.Start(url, 2, 2)
	p.Signal(syscall.SIGHUP)
	waitEvents(t, p, "rollout_completed", 1)
	load.Stop()
	var done struct{ Seconds float64 }
	json.Unmarshal([]byte(p.WaitStderr(`"event":"rollout_completed"`, timeout)), &done)
	if done.Seconds < canary.Seconds() {
		t.Errorf("rollout completed in %.2fs, before the canary's %s", done.Seconds, canary)
	}
	if !strings.Contains(p.Stderr(), "canary passed") {
		t.Error("the canary's passing was not logged")
	}
	if f := load.Failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed:\n%s", f, load.Sent.Load(), load.Errors())
	}
}

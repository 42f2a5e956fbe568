//go:build e2e

package supervisor_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/loadgen"
)

const watchDelay = "300ms"

// quietFor is how long a test watches for a rollout that must not come: several times the
// settle delay and the scan tick together.
const quietFor = 3 * time.Second

// TestWatchKubeletSwap: the kubelet's atomic update of a mounted ConfigMap, under load, starts
// exactly one rolling restart, logged with the changed file's path, and fails no request.
func TestWatchKubeletSwap(t *testing.T) {
	e2e.Require(t)
	v := e2e.NewVolume(t, map[string]string{"app.yaml": "greeting: hello\n", "tls.crt": "cert one\n"})
	p, url := pool(t, []string{"NARWHAL_WORKERS=2", "BOOT_DELAY=200ms", "NARWHAL_WATCH=" + v.Dir,
		"NARWHAL_WATCH_DELAY=" + watchDelay}, e2e.Example(t, "go")...)
	waitEvents(t, p, "ready", 2)

	load := loadgen.Start(url, 2, 2)
	v.Update(map[string]string{"app.yaml": "greeting: hi\n", "tls.crt": "cert one\n"})
	waitEvents(t, p, "rollout_completed", 1)
	time.Sleep(quietFor) // the window in which a second rollout must not start
	load.Stop()

	if n := e2e.Count(p.Stderr(), `"event":"rollout"`); n != 1 {
		t.Errorf("%d rollouts after one update of the volume, want 1", n)
	}
	if want := `"path":"` + filepath.Join(v.Dir, "app.yaml") + `"`; !strings.Contains(p.Stderr(), want) {
		t.Errorf("the restart was not logged with %s", want)
	}
	if f := load.Failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed:\n%s", f, load.Sent.Load(), load.Errors())
	}
	if !e2e.Eventually(timeout, func() bool { return e2e.LiveChildren(p.PID) == 2 }) {
		t.Fatalf("%d workers after the rollout, want 2", e2e.LiveChildren(p.PID))
	}
	if h := getHello(t, url); h.Generation != "2" {
		t.Errorf("after the rollout a worker of generation %s answered, want 2", h.Generation)
	}
}

// TestWatchInPlace: a watched file written in place, then renamed over, starts one rolling
// restart each.
func TestWatchInPlace(t *testing.T) {
	e2e.Require(t)
	file := filepath.Join(t.TempDir(), "settings.json")
	os.WriteFile(file, []byte(`{"a":1}`), 0o644)
	p, url := pool(t, []string{"NARWHAL_WORKERS=1", "NARWHAL_WATCH=" + file, "NARWHAL_WATCH_DELAY=" + watchDelay},
		e2e.Example(t, "go")...)
	waitEvents(t, p, "ready", 1)

	os.WriteFile(file, []byte(`{"a":2}`), 0o644)
	waitEvents(t, p, "rollout_completed", 1)
	os.WriteFile(file+".tmp", []byte(`{"a":3}`), 0o644)
	os.Rename(file+".tmp", file)
	waitEvents(t, p, "rollout_completed", 2)
	// The stopped worker may still answer a connection it accepted while the stop signal
	// reached it (a busy machine makes that window wide): ask once it has gone.
	if !e2e.Eventually(timeout, func() bool { return e2e.LiveChildren(p.PID) == 1 }) {
		t.Fatalf("%d workers after the second rollout, want 1", e2e.LiveChildren(p.PID))
	}
	if h := getHello(t, url); h.Generation != "3" {
		t.Errorf("generation %s answered, want 3", h.Generation)
	}
	if n := e2e.Count(p.Stderr(), `"path":"`+file+`"`); n != 2 {
		t.Errorf("%d restarts logged with the file's path, want 2", n)
	}
}

// TestWatchSameContent: writes that leave the content as it was (the kubelet's swap to the same
// data, a file rewritten as it was, one touched) start no rollout.
func TestWatchSameContent(t *testing.T) {
	e2e.Require(t)
	v := e2e.NewVolume(t, map[string]string{"app.yaml": "greeting: hello\n"})
	file := filepath.Join(t.TempDir(), "plain.conf")
	os.WriteFile(file, []byte("x = 1\n"), 0o644)
	p, _ := pool(t, []string{"NARWHAL_WORKERS=1", "NARWHAL_WATCH=" + v.Dir + "," + file,
		"NARWHAL_WATCH_DELAY=" + watchDelay}, e2e.Example(t, "go")...)
	waitEvents(t, p, "ready", 1)

	v.Update(map[string]string{"app.yaml": "greeting: hello\n"})
	os.WriteFile(file, []byte("x = 1\n"), 0o644)
	later := time.Now().Add(time.Hour)
	os.Chtimes(file, later, later)
	time.Sleep(quietFor) // the window in which no rollout may start
	if n := e2e.Count(p.Stderr(), `"event":"rollout"`); n != 0 {
		t.Errorf("%d rollouts for writes that left the content as it was, want 0:\n%s", n, p.Stderr())
	}
}

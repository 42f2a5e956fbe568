package pool

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
)

// sums is a scan with content only, for the watcher's own tests.
func sums(files map[string]string) map[string]fileState {
	out := map[string]fileState{}
	for p, c := range files {
		var st fileState
		copy(st.sum[:], c)
		out[p] = st
	}
	return out
}

// TestWatcherSettles: a restart comes once scans have stopped changing for the delay, once per
// settled change, naming the first changed path; a change undone within the delay, or a scan
// that differs only in a file's stat, restarts nothing.
func TestWatcherSettles(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	a, b := sums(map[string]string{"/cfg/a": "1", "/cfg/b": "2"}), sums(map[string]string{"/cfg/a": "1", "/cfg/b": "3"})
	w := newWatcher(2*time.Second, a)
	steps := []struct {
		ms      int
		scan    map[string]fileState
		restart string
	}{
		{500, a, ""},
		{1000, b, ""}, // changed: wait for it to settle
		{2500, b, ""}, // 1.5 s quiet
		{3000, b, "/cfg/b"},
		{4000, b, ""}, // once
		{5000, a, ""}, // changed back to what the first generation had
		{6000, b, ""}, // and again to the running content, within the delay
		{9000, b, ""}, // settled on the running content: nothing to do
		{9500, sums(map[string]string{"/cfg/a": "1", "/cfg/b": "3", "/cfg/c": "new"}), ""},
		{11500, sums(map[string]string{"/cfg/a": "1", "/cfg/b": "3", "/cfg/c": "new"}), "/cfg/c"},
		{12000, sums(map[string]string{"/cfg/b": "3", "/cfg/c": "new"}), ""},
		{14000, sums(map[string]string{"/cfg/b": "3", "/cfg/c": "new"}), "/cfg/a"}, // removed
	}
	for _, s := range steps {
		path, restart := w.observe(at(s.ms), s.scan)
		if restart != (s.restart != "") || path != s.restart {
			t.Errorf("at %d ms: restart %v %q, want %q", s.ms, restart, path, s.restart)
		}
	}
}

// TestWatcherRebase: a change that a rollout begun by SIGHUP already picked up starts no
// second rollout once it settles.
func TestWatcherRebase(t *testing.T) {
	a, b := sums(map[string]string{"/cfg/a": "1"}), sums(map[string]string{"/cfg/a": "2"})
	w := newWatcher(2*time.Second, a)
	w.observe(t0.Add(time.Second), b) // changed, not settled
	w.rebase(b)                       // SIGHUP: the new workers read b
	if path, restart := w.observe(t0.Add(5*time.Second), b); restart {
		t.Errorf("restart for %s, which the SIGHUP's rollout already read", path)
	}
	if _, restart := w.observe(t0.Add(6*time.Second), a); restart {
		t.Error("restart before the next change settled")
	}
	if path, restart := w.observe(t0.Add(9*time.Second), a); !restart || path != "/cfg/a" {
		t.Errorf("after the rebase a new change gave %v %q", restart, path)
	}
}

// TestScanKubeletVolume: a scan of a volume the kubelet updates sees the files by their visible
// names only, the same content through a swap as unchanged, and new content as changed.
func TestScanKubeletVolume(t *testing.T) {
	v := e2e.NewVolume(t, map[string]string{"app.yaml": "port: 1\n", "tls.crt": "cert 1"})
	first := scanFiles(time.Now(), []string{v.Dir}, nil)
	if len(first) != 2 || first[filepath.Join(v.Dir, "app.yaml")].size != 8 {
		t.Fatalf("scan of a fresh volume: %v", first)
	}
	v.Update(map[string]string{"app.yaml": "port: 1\n", "tls.crt": "cert 1"})
	same := scanFiles(time.Now(), []string{v.Dir}, first)
	if p := firstChange(first, same); p != "" {
		t.Errorf("a swap to the same content changed %s", p)
	}
	if same[filepath.Join(v.Dir, "tls.crt")].ino == first[filepath.Join(v.Dir, "tls.crt")].ino {
		t.Error("the swap did not replace the files: the test shows nothing")
	}
	v.Update(map[string]string{"app.yaml": "port: 2\n", "tls.crt": "cert 1"})
	if p := firstChange(same, scanFiles(time.Now(), []string{v.Dir}, same)); p != filepath.Join(v.Dir, "app.yaml") {
		t.Errorf("after a new app.yaml the first change is %q", p)
	}

	// In place, and a rename over a file, in a plain directory.
	dir := t.TempDir()
	f := filepath.Join(dir, "key")
	os.WriteFile(f, []byte("one"), 0o600)
	before := scanFiles(time.Now(), []string{f}, nil)
	os.WriteFile(f, []byte("two"), 0o600)
	inPlace := scanFiles(time.Now(), []string{f}, before)
	if firstChange(before, inPlace) != f {
		t.Error("an in-place write was not seen")
	}
	os.WriteFile(f+".new", []byte("three"), 0o600)
	os.Rename(f+".new", f)
	if firstChange(inPlace, scanFiles(time.Now(), []string{f}, inPlace)) != f {
		t.Error("a rename over the file was not seen")
	}
}

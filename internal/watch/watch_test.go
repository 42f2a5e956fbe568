package watch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	t0 := time.Unix(1000, 0)
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
	first := scanWithin(t, []string{v.Dir}, nil)
	if len(first) != 2 || first[filepath.Join(v.Dir, "app.yaml")].size != 8 {
		t.Fatalf("scan of a fresh volume: %v", first)
	}
	v.Update(map[string]string{"app.yaml": "port: 1\n", "tls.crt": "cert 1"})
	same := scanWithin(t, []string{v.Dir}, first)
	if p := firstChange(first, same); p != "" {
		t.Errorf("a swap to the same content changed %s", p)
	}
	if same[filepath.Join(v.Dir, "tls.crt")].ino == first[filepath.Join(v.Dir, "tls.crt")].ino {
		t.Error("the swap did not replace the files: the test shows nothing")
	}
	v.Update(map[string]string{"app.yaml": "port: 2\n", "tls.crt": "cert 1"})
	if p := firstChange(same, scanWithin(t, []string{v.Dir}, same)); p != filepath.Join(v.Dir, "app.yaml") {
		t.Errorf("after a new app.yaml the first change is %q", p)
	}

	// In place, and a rename over a file, in a plain directory.
	dir := t.TempDir()
	f := filepath.Join(dir, "key")
	os.WriteFile(f, []byte("one"), 0o600)
	before := scanWithin(t, []string{f}, nil)
	os.WriteFile(f, []byte("two"), 0o600)
	inPlace := scanWithin(t, []string{f}, before)
	if firstChange(before, inPlace) != f {
		t.Error("an in-place write was not seen")
	}
	os.WriteFile(f+".new", []byte("three"), 0o600)
	os.Rename(f+".new", f)
	if firstChange(inPlace, scanWithin(t, []string{f}, inPlace)) != f {
		t.Error("a rename over the file was not seen")
	}
}

// scanWithin is a scan of paths that fails the test, rather than hanging it, when it takes
// longer than a scan of a handful of files ever should, or meets the bound.
func scanWithin(t *testing.T, paths []string, prev map[string]fileState) map[string]fileState {
	t.Helper()
	done := make(chan map[string]fileState, 1)
	go func() {
		files, cut := scanFiles(time.Now(), paths, prev, MaxEntries)
		if cut {
			files = nil
		}
		done <- files
	}()
	select {
	case files := <-done:
		if files == nil {
			t.Fatalf("a scan of %v met the bound of %d entries", paths, MaxEntries)
		}
		return files
	case <-time.After(2 * time.Second):
		t.Fatalf("a scan of %v took over 2s", paths)
		return nil
	}
}

// TestWatchSymlinkLoop: links from a directory to itself list it once, so the scan ends at
// once with the one file, and a change to that file is seen.
func TestWatchSymlinkLoop(t *testing.T) {
	for _, links := range []int{2, 3} {
		t.Run(fmt.Sprint(links, "links"), func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "conf")
			os.WriteFile(conf, []byte("one"), 0o600)
			for _, l := range []string{"a", "b", "c"}[:links] {
				if err := os.Symlink(".", filepath.Join(dir, l)); err != nil {
					t.Fatal(err)
				}
			}
			before := scanWithin(t, []string{dir}, nil)
			if _, ok := before[conf]; !ok || len(before) != 1 {
				t.Fatalf("the scan read %d files, want %s once", len(before), conf)
			}
			os.WriteFile(conf, []byte("two"), 0o600)
			if p := firstChange(before, scanWithin(t, []string{dir}, before)); p != conf {
				t.Errorf("after a write to conf the first change is %q", p)
			}
		})
	}
}

// TestWatchFIFO: a FIFO under a watched directory, or a watched link to one, is not read, and
// nothing waits for a writer to open it, not even a file swapped for a FIFO between its stat
// and its open.
func TestWatchFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo, conf := filepath.Join(dir, "fifo"), filepath.Join(dir, "conf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(conf, []byte("x"), 0o600)
	link := filepath.Join(t.TempDir(), "watched")
	os.Symlink(fifo, link)

	if files := scanWithin(t, []string{dir}, nil); len(files) != 1 || files[conf] == (fileState{}) {
		t.Errorf("a scan of a directory with a FIFO and conf read %v, want conf only", files)
	}
	if files := scanWithin(t, []string{link}, nil); len(files) != 0 {
		t.Errorf("a scan of a link to a FIFO read %v", files)
	}
	done := make(chan bool, 1)
	go func() { _, ok := hashFile(fifo); done <- ok }()
	select {
	case ok := <-done:
		if ok {
			t.Error("a FIFO was hashed")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("hashing a FIFO waited for a writer")
	}
}

// TestWatchBound: a scan lists no more entries than its bound, says it was cut, and keeps the
// files it read; a tree within the bound is read whole.
func TestWatchBound(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		os.WriteFile(filepath.Join(dir, name), []byte(name), 0o600)
	}
	files, cut := scanFiles(time.Now(), []string{dir}, nil, 3)
	if _, ok := files[filepath.Join(dir, "c")]; !cut || len(files) != 3 || !ok {
		t.Errorf("a scan bounded at 3 of 5 files: cut %v, %d files %v, want a, b and c", cut, len(files), files)
	}
	if files, cut := scanFiles(time.Now(), []string{dir}, nil, 5); cut || len(files) != 5 {
		t.Errorf("a scan bounded at 5 of 5 files: cut %v, %d files", cut, len(files))
	}
}

// lines is a log's output, a write at a time.
type lines chan string

func (l lines) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
}

// TestWatchBoundLogged: a watcher over its bound logs that once, not on each tick, and still
// restarts for a change to a file it reads.
func TestWatchBoundLogged(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		os.WriteFile(filepath.Join(dir, name), []byte(name), 0o600)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logged, events, done := make(lines, 100), make(chan any, 1), make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, slog.New(slog.NewJSONHandler(logged, nil)), []string{dir}, time.Millisecond, 2, events, nil)
	}()
	select {
	case line := <-logged:
		if !strings.Contains(line, `"event":"watch_limit"`) {
			t.Errorf("the first line logged is %s", line)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a watcher over its bound logged nothing")
	}
	os.WriteFile(filepath.Join(dir, "a"), []byte("changed"), 0o600)
	select {
	case ev := <-events:
		if ev != (Change{filepath.Join(dir, "a")}) {
			t.Errorf("event %v, want a change to a", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a change to a file read within the bound started no restart")
	}
	cancel()
	<-done
	if len(logged) != 0 {
		t.Errorf("the bound was logged again: %s", <-logged)
	}
}

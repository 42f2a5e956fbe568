package pool

import (
	"context"
	"crypto/sha256"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// NARWHAL_WATCH compares the content of the watched files on a tick rather than following
// inotify events: a content hash cannot miss an event, needs no watch re-added after the
// kubelet swaps a volume's ..data link, sees a write from another mount namespace or over NFS,
// and does not fire for a write that leaves the content as it was. A file whose inode, size and
// times are unchanged is not read again, so a tick costs a stat per file; but file times are only
// as fine as the kernel's tick, so a file changed within the last second is read each time (as
// git treats a "racily clean" file).

// fileState is what one scan knows of a file.
type fileState struct {
	ino, size    uint64
	mtime, ctime syscall.Timespec
	sum          [sha256.Size]byte
}

// maxWatchDepth bounds the directories followed below a watched path, symbolic links included.
const maxWatchDepth = 16

// scanFiles reads the files under paths by the names a program opens: symbolic links are
// followed, and names beginning with ".." (the kubelet's timestamped directories and its ..data
// link, which the visible names point through) are skipped. A file's hash is taken from prev
// when its stat has not changed and it last changed over a second before now.
func scanFiles(now time.Time, paths []string, prev map[string]fileState) map[string]fileState {
	settled := now.Add(-time.Second).UnixNano()
	out := map[string]fileState{}
	var visit func(path string, depth int)
	visit = func(path string, depth int) {
		fi, err := os.Stat(path)
		if err != nil || depth > maxWatchDepth {
			return // gone between a listing and its stat: the next scan sees the settled tree
		}
		if fi.IsDir() {
			entries, _ := os.ReadDir(path)
			for _, e := range entries {
				if !strings.HasPrefix(e.Name(), "..") {
					visit(filepath.Join(path, e.Name()), depth+1)
				}
			}
			return
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !fi.Mode().IsRegular() || !ok {
			return
		}
		cur := fileState{ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim, ctime: st.Ctim}
		if p, ok := prev[path]; ok && p.ino == cur.ino && p.size == cur.size && p.mtime == cur.mtime && p.ctime == cur.ctime &&
			cur.ctime.Nano() < settled {
			cur.sum = p.sum
		} else if cur.sum, ok = hashFile(path); !ok {
			return
		}
		out[path] = cur
	}
	for _, p := range paths {
		visit(p, 0)
	}
	return out
}

func hashFile(path string) (sum [sha256.Size]byte, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return sum, false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, false
	}
	copy(sum[:], h.Sum(nil))
	return sum, true
}

// watcher decides when a change to the watched files has settled. It is plain data: observe
// takes each scan with its time.
type watcher struct {
	delay   time.Duration
	base    map[string]fileState // the content the running generation started with
	last    map[string]fileState // the previous scan
	changed time.Time            // when the last scan that differed from the one before it came; zero if settled
}

func newWatcher(delay time.Duration, first map[string]fileState) *watcher {
	return &watcher{delay: delay, base: first, last: first}
}

// observe takes the scan made at now. Once no scan has differed from the one before it for
// delay, it reports the first path, in order, whose content differs from the base, and makes
// that content the base; a change undone within the delay reports nothing.
func (w *watcher) observe(now time.Time, scan map[string]fileState) (path string, restart bool) {
	if firstChange(w.last, scan) != "" {
		w.changed = now
	}
	w.last = scan
	if w.changed.IsZero() || now.Sub(w.changed) < w.delay {
		return "", false
	}
	w.changed = time.Time{}
	if path = firstChange(w.base, scan); path == "" {
		return "", false
	}
	w.base = scan
	return path, true
}

// firstChange is the first path, in order, that is in one scan only or whose content differs;
// "" when the content is the same.
func firstChange(a, b map[string]fileState) string {
	paths := slices.Collect(maps.Keys(a))
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		x, inA := a[p]
		y, inB := b[p]
		if inA != inB || x.sum != y.sum {
			return p
		}
	}
	return ""
}

// watchEvent is a settled change to a watched file.
type watchEvent struct{ path string }

// watchTick is how often the watched files are scanned: often enough that a change settles
// within about the delay.
func watchTick(delay time.Duration) time.Duration {
	return min(max(delay/2, 50*time.Millisecond), time.Second)
}

// rebase makes the files as they are now the base: a rollout begun another way (SIGHUP) reads
// them, so a change it already picked up starts no second one.
func (w *watcher) rebase(scan map[string]fileState) {
	w.base, w.last, w.changed = scan, scan, time.Time{}
}

// watch scans paths on a tick until ctx ends, and sends a watchEvent for each settled change.
// A receive on restarted rebases it.
func watch(ctx context.Context, paths []string, delay time.Duration, events chan<- any, restarted <-chan struct{}) {
	w := newWatcher(delay, scanFiles(time.Now(), paths, nil))
	t := time.NewTicker(watchTick(delay))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-restarted:
			w.rebase(scanFiles(time.Now(), paths, w.last))
		case now := <-t.C:
			path, restart := w.observe(now, scanFiles(now, paths, w.last))
			if !restart {
				continue
			}
			select {
			case events <- watchEvent{path}:
			case <-ctx.Done():
				return
			}
		}
	}
}

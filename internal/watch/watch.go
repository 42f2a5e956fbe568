// Package watch is NARWHAL_WATCH: it sends a Change when the content of a watched file has
// changed and then stayed as it is for the delay.
//
// It compares the content of the watched files on a tick rather than following inotify events: a content hash cannot miss an event, needs no watch re-added after the
// kubelet swaps a volume's ..data link, sees a write from another mount namespace or over NFS,
// and does not fire for a write that leaves the content as it was. A file whose inode, size and
// times are unchanged is not read again, so a tick costs a stat per file; but file times are only
// as fine as the kernel's tick, so a file changed within the last second is read each time (as
// git treats a "racily clean" file).
package watch

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// fileState is what one scan knows of a file.
type fileState struct {
	ino, size    uint64
	mtime, ctime syscall.Timespec
	sum          [sha256.Size]byte
}

func statState(st *syscall.Stat_t) fileState {
	return fileState{ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim, ctime: st.Ctim}
}

// MaxEntries bounds the directory entries one scan lists, and with them its stats, its
// memory and its time, whatever a watched directory holds. A ConfigMap holds a few dozen.
const MaxEntries = 10000

// scanFiles reads the files under paths by the names a program opens: symbolic links are
// followed, and names beginning with ".." (the kubelet's timestamped directories and its ..data
// link, which the visible names point through) are skipped. A file's hash is taken from prev
// when its stat has not changed and it last changed over a second before now. A directory is
// listed once per scan, however many links lead to it, so a link back up its own tree ends
// there; after limit entries the scan stops listing and reports cut, keeping what it read.
func scanFiles(now time.Time, paths []string, prev map[string]fileState, limit int) (files map[string]fileState, cut bool) {
	settled := now.Add(-time.Second).UnixNano()
	files = map[string]fileState{}
	listed := map[[2]uint64]bool{} // by device and inode
	var visit func(path string)
	visit = func(path string) {
		fi, err := os.Stat(path)
		if err != nil {
			return // gone between a listing and its stat: the next scan sees the settled tree
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.IsDir() {
			if dir := [2]uint64{st.Dev, st.Ino}; !listed[dir] {
				listed[dir] = true
				names, more := readNames(path, limit)
				limit -= len(names)
				cut = cut || more
				for _, name := range names {
					if !strings.HasPrefix(name, "..") {
						visit(filepath.Join(path, name))
					}
				}
			}
			return
		}
		if !fi.Mode().IsRegular() {
			return // a FIFO, socket or device: opening or reading one can block, or act
		}
		cur := statState(st)
		if p, ok := prev[path]; ok && p.ino == cur.ino && p.size == cur.size && p.mtime == cur.mtime && p.ctime == cur.ctime &&
			cur.ctime.Nano() < settled {
			cur.sum = p.sum
		} else if cur, ok = hashFile(path); !ok {
			return
		}
		files[path] = cur
	}
	for _, p := range paths {
		visit(p)
	}
	return files, cut
}

// readNames lists at most n names of the directory at path, sorted so that a scan keeps the
// same ones each time, and whether it holds more. Reading no more than that keeps a huge
// directory from costing memory.
func readNames(path string, n int) (names []string, more bool) {
	f, err := openNonblock(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	names, _ = f.Readdirnames(n + 1) // 0 would mean all of them
	slices.Sort(names)
	if len(names) > n {
		return names[:n], true
	}
	return names, false
}

// openNonblock opens path for reading without waiting: a path that a stat saw as a file or a
// directory may be a FIFO by the time it is opened, and a FIFO's open waits for a writer.
func openNonblock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
}

// hashFile hashes the regular file at path, with the state of what it opened. It reads no
// more than the file's size at open, so a file that keeps growing ends the read, and a /proc
// file (size 0) is not read at all: its read could block or never end.
func hashFile(path string) (cur fileState, ok bool) {
	f, err := openNonblock(path)
	if err != nil {
		return cur, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return cur, false
	}
	cur = statState(fi.Sys().(*syscall.Stat_t))
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, int64(cur.size))); err != nil {
		return cur, false
	}
	copy(cur.sum[:], h.Sum(nil))
	return cur, true
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

// Change is a settled change to a watched file.
type Change struct{ Path string }

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

// Run scans paths on a tick until ctx ends, and sends a Change for each settled
// change. A receive on restarted rebases it. When the paths hold more than limit entries it
// says so once, not each tick, and watches the files it reads.
func Run(ctx context.Context, log *slog.Logger, paths []string, delay time.Duration, limit int,
	events chan<- any, restarted <-chan struct{}) {
	wasCut := false
	scan := func(now time.Time, prev map[string]fileState) map[string]fileState {
		files, cut := scanFiles(now, paths, prev, limit)
		if cut && !wasCut {
			log.Warn("NARWHAL_WATCH: too many entries under the watched paths; changes to the rest go unseen",
				"event", "watch_limit", "paths", paths, "limit", limit, "files", len(files))
		}
		wasCut = cut
		return files
	}
	w := newWatcher(delay, scan(time.Now(), nil))
	t := time.NewTicker(watchTick(delay))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-restarted:
			w.rebase(scan(time.Now(), w.last))
		case now := <-t.C:
			path, restart := w.observe(now, scan(now, w.last))
			if !restart {
				continue
			}
			select {
			case events <- Change{path}:
			case <-ctx.Done():
				return
			}
		}
	}
}

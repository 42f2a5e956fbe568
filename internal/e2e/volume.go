package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Volume is a directory laid out and updated as the kubelet does a ConfigMap or Secret volume:
// the files live in a timestamped directory ..<time>, ..data is a symbolic link to it, and each
// visible name is a link through ..data. An update writes a new timestamped directory, renames
// a new ..data link over the old one (the one atomic step), then removes the old directory.
type Volume struct {
	t   T
	Dir string
	n   int
}

// NewVolume lays out files in a new directory.
func NewVolume(t T, files map[string]string) *Volume {
	v := &Volume{t: t, Dir: t.TempDir()}
	v.Update(files)
	return v
}

// Update swaps the volume's content for files, as the kubelet's atomic writer does.
func (v *Volume) Update(files map[string]string) {
	v.t.Helper()
	v.n++
	ts := fmt.Sprintf("..%s.%d", time.Now().UTC().Format("2006_01_02_15_04_05"), v.n)
	must := func(err error) {
		if err != nil {
			v.t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(v.Dir, ts), 0o755))
	for name, content := range files {
		must(os.WriteFile(filepath.Join(v.Dir, ts, name), []byte(content), 0o644))
	}
	old, _ := os.Readlink(filepath.Join(v.Dir, "..data"))
	must(os.Symlink(ts, filepath.Join(v.Dir, "..data_tmp")))
	must(os.Rename(filepath.Join(v.Dir, "..data_tmp"), filepath.Join(v.Dir, "..data")))
	for name := range files {
		link := filepath.Join(v.Dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			must(os.Symlink(filepath.Join("..data", name), link))
		}
	}
	if old != "" {
		must(os.RemoveAll(filepath.Join(v.Dir, old)))
	}
}

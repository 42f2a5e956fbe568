package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Example returns the command line of the bundled example worker in lang (go, node, python),
// building the Go one once.
func Example(t T, lang string) []string {
	t.Helper()
	root := moduleRoot()
	switch lang {
	case "node":
		needTool(t, "node")
		return []string{"node", filepath.Join(root, "examples/node/server.js")}
	case "python":
		needTool(t, "python3")
		return []string{"python3", filepath.Join(root, "examples/python/server.py")}
	}
	return []string{buildTool(t, "example-go", "./examples/go")}
}

// Chatter returns the command line of internal/e2e/chatter, a worker that only writes lines,
// built once, with args.
func Chatter(t T, args ...string) []string {
	t.Helper()
	return append([]string{buildTool(t, "chatter", "./internal/e2e/chatter")}, args...)
}

var (
	builtMu sync.Mutex
	built   = map[string]error{}
)

// buildTool builds the package pkg of this module as buildDir/name, once per test binary.
func buildTool(t T, name, pkg string) string {
	t.Helper()
	Binary(t) // makes buildDir
	out := filepath.Join(buildDir, name)
	builtMu.Lock()
	defer builtMu.Unlock()
	err, ok := built[name]
	if !ok {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = moduleRoot()
		if msg, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("build %s: %v\n%s", pkg, e, msg)
		}
		built[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Server returns the command line that runs the examples' shared app under a real app server
// (gunicorn, uvicorn, puma), one per narwhal slot on the sockets narwhal passes down, as the
// docs/servers.md shows it. The Debian packages provide the servers and run them on /usr/bin/python3.
func Server(t T, name string) []string {
	t.Helper()
	root := moduleRoot()
	python, ruby := filepath.Join(root, "examples/python"), filepath.Join(root, "examples/ruby")
	switch name {
	case "gunicorn":
		needTool(t, "gunicorn")
		return []string{"gunicorn", "--chdir", python, "app:app"}
	case "uvicorn":
		needModule(t, "/usr/bin/python3", "uvicorn")
		return []string{"/usr/bin/python3", filepath.Join(python, "uvicorn_serve.py"), "--no-access-log", "--app-dir", python, "--fd", "3", "app:asgi"}
	case "puma":
		needTool(t, "puma")
		return []string{"puma", "--bind-to-activated-sockets", "only", "--config", filepath.Join(ruby, "puma.rb"), filepath.Join(ruby, "config.ru")}
	}
	return Example(t, name)
}

// PreloadServer returns Server's command line for NARWHAL_PRELOAD=true: the app loaded once in a
// template, and each worker forked at the fork point of contrib/'s helper, as docs/preload.md
// runs them. uvicorn's and puma's are Server's: the example's loader and config.ru call it.
func PreloadServer(t T, name string) []string {
	t.Helper()
	cmd := Server(t, name)
	if name == "gunicorn" {
		return append([]string{"env", "PYTHONPATH=" + filepath.Join(moduleRoot(), "contrib/python"), cmd[0], "-c", "python:narwhal_fork"}, cmd[1:]...)
	}
	return cmd
}

func needModule(t T, python, module string) {
	t.Helper()
	if exec.Command(python, "-c", "import "+module).Run() != nil {
		if os.Getenv("NARWHAL_E2E") == "required" {
			t.Fatalf("%s cannot import %s, and NARWHAL_E2E=required", python, module)
		}
		t.Skipf("%s cannot import %s", python, module)
	}
}

func needTool(t T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("NARWHAL_E2E") == "required" {
			t.Fatalf("%s is not installed, and NARWHAL_E2E=required", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Get fetches url on a fresh connection and returns the body.
func Get(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return string(b), err
}

// LiveChildren counts pid's children that are not zombies.
func LiveChildren(pid int) int {
	n := 0
	for _, c := range Children(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err == nil && !strings.Contains(string(b), ") Z ") {
			n++
		}
	}
	return n
}

// Sampler records the most children pid had at once, sampled every millisecond or so.
type Sampler struct {
	Max    atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
}

func SampleChildren(pid int) *Sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			if n := int64(stillChildren(pid, Children(pid))); n > s.Max.Load() {
				s.Max.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return s
}

// stillChildren counts the pids that are still children of parent. The kernel lists children
// per thread and the lists are read one after another, so a worker reaped between two reads
// can appear beside its successor; a reaped process has no /proc entry when checked after.
func stillChildren(parent int, pids []int) int {
	n := 0
	for _, c := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 1 && f[1] == strconv.Itoa(parent) {
			n++
		}
	}
	return n
}

func (s *Sampler) Stop() int {
	s.cancel()
	<-s.done
	return int(s.Max.Load())
}

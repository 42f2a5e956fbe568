package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/internal/loadgen"
	"github.com/narwhal-init/narwhal/internal/proc"
)

// A row of the table: a process manager running the app, and how a deploy restarts it.
type manager struct {
	name    string
	app     string // python, ruby, node or go: which release files it runs
	start   func(r *row) *exec.Cmd
	restart func(r *row) error
	how     string // the restart, as the table shows it
}

// row is one manager running in one scenario.
type row struct {
	*manager
	rel, tmp string // the release directory, and a scratch one (pid files, fifos)
	port     int
	cmd      *exec.Cmd
	load     *loadgen.Load
	master   int           // the manager's master process now
	root     string        // the project
	boot     time.Duration // the app's boot delay
}

func (r *row) pidfile() string { return filepath.Join(r.tmp, "master.pid") }
func (r *row) addr() string    { return "127.0.0.1:" + strconv.Itoa(r.port) }

func signalCmd(sig syscall.Signal) func(r *row) error {
	return func(r *row) error { return r.cmd.Process.Signal(sig) }
}

func (r *row) command(env []string, args ...string) *exec.Cmd {
	return execIn(r.rel, append([]string{"BOOT_DELAY=" + r.boot.String(), "WORKERS=4"}, env...), args...)
}

// execIn is a command run in dir with the benchmark's environment and env.
func execIn(dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// narwhal runs the release's app under narwhal, as the README says to for each server.
func narwhal(app, server string, args ...string) *manager {
	return &manager{
		name: "narwhal + " + server, app: app, how: "HUP",
		start: func(r *row) *exec.Cmd {
			return r.command([]string{"NARWHAL_WORKERS=4", "NARWHAL_LISTEN=" + r.addr(),
				"NARWHAL_METRICS_ADDR=off", "NARWHAL_READY_TIMEOUT=" + readyTimeout.String(), "NARWHAL_LOG_FORMAT=text"},
				append([]string{filepath.Join(r.root, "bin/narwhal")}, args...)...)
		},
		restart: signalCmd(syscall.SIGHUP),
	}
}

// preloaded is narwhal's row with NARWHAL_PRELOAD=true: the app loaded once per generation in a
// template, the workers forked from it at the fork point of contrib/'s helper. A surge above 1
// replaces that many workers at once (unicorn's re-exec replaces all 4 at once).
func preloaded(surge int, app, server string, args ...string) *manager {
	m := narwhal(app, server, args...)
	m.name += ", preload"
	env := []string{"NARWHAL_PRELOAD=true"}
	if surge > 1 {
		m.name += ", surge " + strconv.Itoa(surge)
		env = append(env, "NARWHAL_ROLLOUT_SURGE="+strconv.Itoa(surge))
	}
	start := m.start
	m.start = func(r *row) *exec.Cmd {
		cmd := start(r)
		cmd.Env = append(cmd.Env, env...)
		return cmd
	}
	return m
}

var managers = []*manager{
	narwhal("go", "Go example", "./server"),
	narwhal("node", "node http", "node", "server.js"),
	narwhal("python", "gunicorn", "gunicorn", "app:app"),
	narwhal("python", "uvicorn", "/usr/bin/python3", "uvicorn_serve.py", "--no-access-log", "--fd", "3", "app:asgi"),
	narwhal("ruby", "puma", "puma", "--bind-to-activated-sockets", "only", "--config", "puma.rb", "config.ru"),
	preloaded(1, "python", "gunicorn", "gunicorn", "-c", "narwhal_fork.py", "app:app"),
	preloaded(1, "ruby", "puma", "puma", "--bind-to-activated-sockets", "only", "--config", "puma.rb", "config.ru"),
	preloaded(4, "python", "gunicorn", "gunicorn", "-c", "narwhal_fork.py", "app:app"),
	preloaded(4, "ruby", "puma", "puma", "--bind-to-activated-sockets", "only", "--config", "puma.rb", "config.ru"),
	{
		name: "gunicorn", app: "python", how: "HUP",
		start: func(r *row) *exec.Cmd {
			return r.command(nil, "gunicorn", "-w", "4", "-b", r.addr(), "--pid", r.pidfile(), "app:app")
		},
		restart: signalCmd(syscall.SIGHUP),
	},
	{
		name: "gunicorn", app: "python", how: "USR2, TERM",
		start: func(r *row) *exec.Cmd {
			return r.command(nil, "gunicorn", "-w", "4", "-b", r.addr(), "--pid", r.pidfile(), "app:app")
		},
		restart: reexec(syscall.SIGTERM),
	},
	{
		name: "unicorn", app: "ruby", how: "USR2, QUIT",
		start:   unicorn,
		restart: reexec(syscall.SIGQUIT),
	},
	{
		name: "unicorn", app: "ruby", how: "HUP",
		start:   unicorn,
		restart: masterSignal(syscall.SIGHUP),
	},
	{
		name: "puma cluster", app: "ruby", how: "USR1 (phased)",
		start: func(r *row) *exec.Cmd {
			return r.command(nil, "puma", "-w", "4", "-t", "1:5", "-b", "tcp://"+r.addr(), "--pidfile", r.pidfile(), "config.ru")
		},
		restart: signalCmd(syscall.SIGUSR1),
	},
	{
		name: "uwsgi", app: "python", how: "chain reload",
		start: func(r *row) *exec.Cmd {
			return r.command(nil, "uwsgi", "--plugin", "python3", "--http-socket", r.addr(), "--master",
				"--processes", "4", "--lazy-apps", "--wsgi-file", "app.py", "--callable", "app",
				"--master-fifo", filepath.Join(r.tmp, "fifo"), "--die-on-term", "--disable-logging")
		},
		restart: func(r *row) error { return os.WriteFile(filepath.Join(r.tmp, "fifo"), []byte("c"), 0) },
	},
	{
		name: "node cluster", app: "node", how: "HUP (rolling)",
		start: func(r *row) *exec.Cmd {
			return r.command([]string{"PORT=" + strconv.Itoa(r.port)}, "node", filepath.Join(r.root, "bench/driver/cluster.js"), "server.js")
		},
		restart: signalCmd(syscall.SIGHUP),
	},
}

func unicorn(r *row) *exec.Cmd {
	conf := filepath.Join(r.tmp, "unicorn.rb")
	os.WriteFile(conf, []byte(fmt.Sprintf("worker_processes 4\nlisten %q\npid %q\npreload_app false\ntimeout 30\n",
		r.addr(), r.pidfile())), 0o644)
	return r.command(nil, "unicorn", "-c", conf, "config.ru")
}

// masterSignal signals the master, which after a re-exec is no longer the process the
// benchmark started.
func masterSignal(sig syscall.Signal) func(r *row) error {
	return func(r *row) error { return syscall.Kill(r.master, sig) }
}

// reexec is the documented re-exec deploy of gunicorn and unicorn: USR2 makes the master fork
// and exec a new master on the same sockets; once that one has forked all its workers (where
// unicorn's example config sends the QUIT from its before_fork hook), the old master is told
// to stop. If the new master never gets there within the restart's time, the old one is left
// running, as a careful deploy script would.
func reexec(stop syscall.Signal) func(r *row) error {
	return func(r *row) error {
		old := r.master
		if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
			return err
		}
		for deadline := time.Now().Add(restartTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			snap := proc.Host.Snapshot()
			for _, c := range children(snap, old) {
				if len(children(snap, c)) >= 4 {
					r.master = c
					return syscall.Kill(old, stop)
				}
			}
		}
		return fmt.Errorf("the new master did not fork its workers within %s", restartTimeout)
	}
}

// children lists the live children of pid, as snap saw them.
func children(snap *proc.Snapshot, pid int) []int {
	var out []int
	for _, c := range snap.Children(pid) {
		if alive(snap, c) {
			out = append(out, c)
		}
	}
	return out
}

func alive(snap *proc.Snapshot, pid int) bool {
	st, ok := snap.Stat(pid)
	return ok && st.State != 'Z'
}

// Command floor is what init mode is measured against (bench/init): a Go binary that links
// narwhal's dependencies, so it pays their package initialisation and their share of the
// binary, and does the least an init does: start its arguments as a child, wait for it, and
// exit with its code (128+N when signal N killed it). What narwhal costs above this is
// narwhal's own.
//
// With -signals first, it also catches every signal narwhal does (os/signal.Notify of each
// signal but SIGKILL, SIGSTOP, SIGURG, SIGPROF and the C library's 32-34) before starting the
// child: the part of narwhal's cost that any Go init forwarding every signal pays, since the
// runtime enables each with a round trip to its signal-mask thread.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	_ "github.com/kelseyhightower/envconfig"
	_ "github.com/lmittmann/tint"
	_ "github.com/oklog/run"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "golang.org/x/sys/unix"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "-signals" {
		catchAll()
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: floor [-signals] COMMAND [ARG...]")
		os.Exit(2)
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "floor: %v\n", err)
		os.Exit(127)
	}
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "floor: %v\n", err)
		os.Exit(126)
	}
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	if ws.Signaled() {
		os.Exit(128 + int(ws.Signal()))
	}
	os.Exit(ws.ExitStatus())
}

// catchAll subscribes to every signal narwhal catches, SIGCHLD included; none is read.
func catchAll() {
	var sigs []os.Signal
	for s := syscall.Signal(1); s <= 64; s++ {
		switch {
		case s == syscall.SIGKILL, s == syscall.SIGSTOP, s == syscall.SIGURG, s == syscall.SIGPROF:
		case s >= 32 && s <= 34:
		default:
			sigs = append(sigs, s)
		}
	}
	signal.Notify(make(chan os.Signal, len(sigs)), sigs...)
}

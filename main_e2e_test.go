//go:build e2e

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/fit"
)

// TestConflictingEnvironment: values that are each well-formed but cannot work (together, or on
// this machine) exit 78 with a message naming the variable, from --check-config and from a real
// start, before anything runs: the command would create a file.
func TestConflictingEnvironment(t *testing.T) {
	e2e.Require(t)
	const timeout = 30 * time.Second
	auto, _ := fit.AutoWorkers(1)
	port := strconv.Itoa(e2e.FreePort(t))
	cases := []struct {
		variable string
		env      []string
	}{
		{"NARWHAL_READY_DELAY", []string{"NARWHAL_WORKERS=1", "NARWHAL_READY=delay", "NARWHAL_READY_DELAY=2s", "NARWHAL_READY_TIMEOUT=1s"}},
		{"NARWHAL_MIN_READY", []string{"NARWHAL_WORKERS=auto", "NARWHAL_CPUS=1", "NARWHAL_MIN_READY=" + strconv.Itoa(auto+1)}},
		{"NARWHAL_MIN_READY", []string{"NARWHAL_WORKERS=2-8", "NARWHAL_MIN_READY=9"}},
		{"NARWHAL_WORKER_DIR", []string{"NARWHAL_WORKERS=1", "NARWHAL_WORKER_DIR=/nonexistent"}},
		{"NARWHAL_LISTEN", []string{"NARWHAL_LISTEN=tcp4://[::1]:" + port}},
		{"NARWHAL_LISTEN", []string{"NARWHAL_LISTEN=tcp6://127.0.0.1:" + port}},
		{"NARWHAL_LISTEN", []string{"NARWHAL_LISTEN=127.0.0.1:" + port + ",tcp4://127.0.0.1:" + port}},
		{"NARWHAL_CONTROL_SOCKET", []string{"NARWHAL_CONTROL_SOCKET=/tmp/" + strings.Repeat("s", 120)}},
		{"NARWHAL_CONTROL_SOCKET", []string{"NARWHAL_WORKERS=1", "NARWHAL_CONTROL_SOCKET=@" + strings.Repeat("s", 120)}},
	}
	for _, tc := range cases {
		env := append([]string{"NARWHAL_METRICS_ADDR=off"}, tc.env...)
		t.Run(strings.Join(tc.env, " "), func(t *testing.T) {
			for _, args := range [][]string{{"--check-config"}, {"touch", filepath.Join(t.TempDir(), "started")}} {
				p := e2e.Start(t, e2e.Options{NoNS: true, Env: env}, args...)
				if got := p.Wait(timeout); got != 78 {
					t.Errorf("%s: exit code = %d, want 78", args[0], got)
				}
				if msg := p.Stderr(); !strings.Contains(msg, tc.variable) || !strings.Contains(msg, "want") {
					t.Errorf("%s: message does not name %s and what is accepted: %q", args[0], tc.variable, msg)
				}
				if args[0] == "touch" {
					if _, err := os.Stat(args[1]); err == nil {
						t.Error("the command ran despite the invalid environment")
					}
				}
			}
		})
	}
	// The pool can grow to 3, so that many ready workers can be asked for.
	p := e2e.Start(t, e2e.Options{NoNS: true, Env: []string{"NARWHAL_WORKERS=2-8", "NARWHAL_MIN_READY=3"}}, "--check-config")
	if got := p.Wait(timeout); got != 0 {
		t.Errorf("NARWHAL_WORKERS=2-8 NARWHAL_MIN_READY=3: --check-config exit code = %d, want 0: %s", got, p.Stderr())
	}
}

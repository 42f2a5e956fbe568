package config_test

import (
	"bytes"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/narwhal-init/narwhal/config"
)

// specVariables are the NARWHAL_* variables SPEC.md names as settings. NARWHAL_WORKER_ID,
// NARWHAL_GENERATION and NARWHAL_NOTIFY_FD are left out: narwhal sets them for its workers.
var specVariables = []string{
	"NARWHAL_BACKLOG",
	"NARWHAL_CONTROL_SOCKET",
	"NARWHAL_DRAIN_DELAY",
	"NARWHAL_EXIT_REMAP",
	"NARWHAL_LISTEN",
	"NARWHAL_LOG_FORMAT",
	"NARWHAL_LOG_LEVEL",
	"NARWHAL_MAX_LIFETIME",
	"NARWHAL_MAX_MEMORY",
	"NARWHAL_METRICS_ADDR",
	"NARWHAL_MIN_READY",
	"NARWHAL_PRE_START",
	"NARWHAL_READY",
	"NARWHAL_READY_DELAY",
	"NARWHAL_READY_TIMEOUT",
	"NARWHAL_RESTART_DELAY",
	"NARWHAL_RESTART_DELAY_MAX",
	"NARWHAL_ROLLOUT_CANARY",
	"NARWHAL_ROLLOUT_SURGE",
	"NARWHAL_SIGNAL_GROUP",
	"NARWHAL_SIGNAL_REWRITE",
	"NARWHAL_SOCKET_MODE",
	"NARWHAL_STOP_SIGNAL",
	"NARWHAL_STOP_TIMEOUT",
	"NARWHAL_WATCH",
	"NARWHAL_WATCH_DELAY",
	"NARWHAL_WORKERS",
	"NARWHAL_WORKER_DIR",
	"NARWHAL_WORKER_GROUP",
	"NARWHAL_WORKER_OUTPUT",
	"NARWHAL_WORKER_TIMEOUT",
	"NARWHAL_WORKER_USER",
}

// clearEnv unsets every variable Load could read, for the duration of the test, so that the
// environment the tests run in cannot change what they see. The unprefixed names (LISTEN,
// LOG_LEVEL, …) are cleared too, because the envconfig library falls back to them.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, name := range config.Variables() {
		for _, n := range []string{name, strings.TrimPrefix(name, config.Prefix+"_")} {
			t.Setenv(n, "")
			os.Unsetenv(n)
		}
	}
}

func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	clearEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func TestLoadDefaultsInitMode(t *testing.T) {
	clearEnv(t)
	c, err := config.Load()
	if err != nil {
		t.Fatalf("Load() with no NARWHAL_* set: %v", err)
	}
	want := &config.Config{
		Workers:         config.Workers{},
		ScaleUpAfter:    config.Duration(time.Second),
		ScaleDownAfter:  config.Duration(time.Minute),
		Backlog:         1024,
		SocketMode:      "inherit",
		Ready:           "auto",
		ReadyDelay:      config.Duration(time.Second),
		ReadyTimeout:    config.Duration(60 * time.Second),
		RolloutSurge:    1,
		WatchDelay:      config.Duration(2 * time.Second),
		WorkerOutput:    "inherit",
		RestartDelay:    config.Duration(100 * time.Millisecond),
		RestartDelayMax: config.Duration(30 * time.Second),
		MinReady:        1,
		StopSignal:      config.Signal(syscall.SIGTERM),
		StopTimeout:     config.Duration(25 * time.Second),
		DrainDelay:      config.Duration(5 * time.Second),
		LogFormat:       "auto",
		LogLevel:        "info",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load() =\n%+v\nwant\n%+v", *c, *want)
	}
	if c.Mode() != "init" || c.Pool {
		t.Errorf("Mode() = %q (Pool %v), want init", c.Mode(), c.Pool)
	}
	if got := c.EffectiveMetricsAddr(); got != "" {
		t.Errorf("EffectiveMetricsAddr() in init mode = %q, want none", got)
	}
	if got := c.StopTimeout.D(); got != 25*time.Second {
		t.Errorf("StopTimeout = %v, want 25s", got)
	}
	var out bytes.Buffer
	if err := c.WriteEffective(&out); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"mode=init\n", "NARWHAL_METRICS_ADDR=off\n", "NARWHAL_STOP_TIMEOUT=25s\n", "NARWHAL_STOP_SIGNAL=SIGTERM\n", "NARWHAL_WORKERS=auto\n"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("WriteEffective() lacks %q:\n%s", line, out.String())
		}
	}
}

func TestLoadModes(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		mode    string
		metrics string
		workers config.Workers
	}{
		{"nothing set", nil, "init", "", config.Workers{}},
		{"workers", map[string]string{"NARWHAL_WORKERS": "3"}, "pool", ":9090", config.Workers{Min: 3, Max: 3}},
		{"workers auto", map[string]string{"NARWHAL_WORKERS": "auto"}, "pool", ":9090", config.Workers{}},
		{"listen", map[string]string{"NARWHAL_LISTEN": ":8080"}, "pool", ":9090", config.Workers{}},
		{"listen and workers", map[string]string{"NARWHAL_LISTEN": ":8080", "NARWHAL_WORKERS": "2"}, "pool", ":9090", config.Workers{Min: 2, Max: 2}},
		{"pool, metrics off", map[string]string{"NARWHAL_WORKERS": "2", "NARWHAL_METRICS_ADDR": "off"}, "pool", "", config.Workers{Min: 2, Max: 2}},
		{"pool, metrics moved", map[string]string{"NARWHAL_WORKERS": "2", "NARWHAL_METRICS_ADDR": "127.0.0.1:9100"}, "pool", "127.0.0.1:9100", config.Workers{Min: 2, Max: 2}},
		{"init, metrics asked for", map[string]string{"NARWHAL_METRICS_ADDR": ":9100"}, "init", ":9100", config.Workers{}},
		{"init, metrics off", map[string]string{"NARWHAL_METRICS_ADDR": "off"}, "init", "", config.Workers{}},
		{"init, other settings", map[string]string{"NARWHAL_STOP_TIMEOUT": "5s", "NARWHAL_SIGNAL_GROUP": "true"}, "init", "", config.Workers{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			c, err := config.Load()
			if err != nil {
				t.Fatalf("Load(): %v", err)
			}
			if c.Mode() != tc.mode || c.Pool != (tc.mode == "pool") {
				t.Errorf("Mode() = %q, Pool = %v; want %q", c.Mode(), c.Pool, tc.mode)
			}
			if got := c.EffectiveMetricsAddr(); got != tc.metrics {
				t.Errorf("EffectiveMetricsAddr() = %q, want %q", got, tc.metrics)
			}
			if c.Workers != tc.workers {
				t.Errorf("Workers = %v, want %v", c.Workers, tc.workers)
			}
		})
	}
}

func TestLoadReadsEveryKind(t *testing.T) {
	workerDir := t.TempDir()
	setEnv(t, map[string]string{
		"NARWHAL_WORKERS":           "4",
		"NARWHAL_LISTEN":            "web=:8080,unix:///tmp/narwhal-test.sock",
		"NARWHAL_BACKLOG":           "65535",
		"NARWHAL_SOCKET_MODE":       " ReusePort ",
		"NARWHAL_READY":             "NOTIFY",
		"NARWHAL_READY_TIMEOUT":     "2m",
		"NARWHAL_ROLLOUT_SURGE":     "2",
		"NARWHAL_ROLLOUT_CANARY":    "30s",
		"NARWHAL_WATCH":             " /etc , /tmp/ ",
		"NARWHAL_WATCH_DELAY":       "500ms",
		"NARWHAL_WORKER_DIR":        workerDir,
		"NARWHAL_WORKER_USER":       "65534",
		"NARWHAL_WORKER_GROUP":      "0",
		"NARWHAL_PRE_START":         "/app/migrate --to 'latest stable'",
		"NARWHAL_WORKER_OUTPUT":     "Json",
		"NARWHAL_RESTART_DELAY":     "1s",
		"NARWHAL_RESTART_DELAY_MAX": "1s",
		"NARWHAL_WORKER_TIMEOUT":    "10s",
		"NARWHAL_MAX_MEMORY":        "512Mi",
		"NARWHAL_MAX_LIFETIME":      "6h",
		"NARWHAL_MIN_READY":         "4",
		"NARWHAL_STOP_SIGNAL":       "quit",
		"NARWHAL_STOP_TIMEOUT":      "1m30s",
		"NARWHAL_DRAIN_DELAY":       "0",
		"NARWHAL_SIGNAL_GROUP":      "true",
		"NARWHAL_SIGNAL_REWRITE":    "TERM:QUIT,USR1:0",
		"NARWHAL_EXIT_REMAP":        "143:0",
		"NARWHAL_METRICS_ADDR":      "127.0.0.1:9100",
		"NARWHAL_CONTROL_SOCKET":    "@narwhal-test",
		"NARWHAL_LOG_FORMAT":        "JSON",
		"NARWHAL_LOG_LEVEL":         "Debug",
	})
	c, err := config.Load()
	if err != nil {
		t.Fatalf("Load(): %v", err)
	}
	want := &config.Config{
		Workers:        config.Workers{Min: 4, Max: 4},
		ScaleUpAfter:   config.Duration(time.Second),
		ScaleDownAfter: config.Duration(time.Minute),
		Listen: config.Listeners{
			{Name: "web", Network: "tcp", Address: ":8080"},
			{Name: "listen1", Network: "unix", Address: "/tmp/narwhal-test.sock"},
		},
		Backlog:         65535,
		SocketMode:      "reuseport",
		Ready:           "notify",
		ReadyDelay:      config.Duration(time.Second),
		ReadyTimeout:    config.Duration(2 * time.Minute),
		RolloutSurge:    2,
		RolloutCanary:   config.Duration(30 * time.Second),
		Watch:           config.Paths{"/etc", "/tmp"},
		WatchDelay:      config.Duration(500 * time.Millisecond),
		WorkerDir:       workerDir,
		WorkerUser:      "65534",
		WorkerGroup:     "0",
		PreStart:        config.Command{"/app/migrate", "--to", "latest stable"},
		WorkerOutput:    "json",
		RestartDelay:    config.Duration(time.Second),
		RestartDelayMax: config.Duration(time.Second),
		WorkerTimeout:   config.Duration(10 * time.Second),
		MaxMemory:       config.Memory{Bytes: 512 << 20},
		MaxLifetime:     config.Duration(6 * time.Hour),
		MinReady:        4,
		StopSignal:      config.Signal(syscall.SIGQUIT),
		StopTimeout:     config.Duration(90 * time.Second),
		SignalGroup:     true,
		SignalRewrite:   config.SignalRewrite{syscall.SIGTERM: syscall.SIGQUIT, syscall.SIGUSR1: 0},
		ExitRemap:       config.ExitRemap{143: 0},
		MetricsAddr:     "127.0.0.1:9100",
		ControlSocket:   "@narwhal-test",
		LogFormat:       "json",
		LogLevel:        "debug",
		Pool:            true,
		Credential:      &syscall.Credential{Uid: 65534, Gid: 0, Groups: []uint32{}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load() =\n%+v\nwant\n%+v", *c, *want)
	}
}

func TestLoadAcceptsIdentities(t *testing.T) {
	ids := []string{"0", "65534", "2147483646"}
	if u, err := user.Current(); err == nil && u.Username != "" {
		ids = append(ids, u.Username)
	}
	for _, id := range ids {
		setEnv(t, map[string]string{"NARWHAL_WORKER_USER": id})
		c, err := config.Load()
		if err != nil {
			t.Errorf("NARWHAL_WORKER_USER=%s: %v", id, err)
			continue
		}
		if c.WorkerUser != id {
			t.Errorf("NARWHAL_WORKER_USER=%s: WorkerUser = %q", id, c.WorkerUser)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(t.TempDir(), "current")
	if err := os.Symlink("/no/such/release", dangling); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		env      map[string]string
		variable string // the variable the error must name
		value    string // the value the message must quote
		hint     string // part of what the message says is accepted
	}{
		{map[string]string{"NARWHAL_WORKERS": "abc"}, "NARWHAL_WORKERS", "abc", "1 to 4096"},
		{map[string]string{"NARWHAL_WORKERS": "0"}, "NARWHAL_WORKERS", "0", "1 to 4096"},
		{map[string]string{"NARWHAL_WORKERS": "4097"}, "NARWHAL_WORKERS", "4097", "1 to 4096"},
		{map[string]string{"NARWHAL_STOP_TIMEOUT": "-1s"}, "NARWHAL_STOP_TIMEOUT", "-1s", "not negative"},
		{map[string]string{"NARWHAL_STOP_TIMEOUT": "forever"}, "NARWHAL_STOP_TIMEOUT", "forever", "25s"},
		{map[string]string{"NARWHAL_DRAIN_DELAY": "soon"}, "NARWHAL_DRAIN_DELAY", "soon", "25s"},
		{map[string]string{"NARWHAL_READY_DELAY": "1"}, "NARWHAL_READY_DELAY", "1", "500ms"},
		{map[string]string{"NARWHAL_MAX_LIFETIME": "6 hours"}, "NARWHAL_MAX_LIFETIME", "6 hours", "1m30s"},
		{map[string]string{"NARWHAL_WORKER_TIMEOUT": "-5s"}, "NARWHAL_WORKER_TIMEOUT", "-5s", "not negative"},
		{map[string]string{"NARWHAL_READY_TIMEOUT": "0"}, "NARWHAL_READY_TIMEOUT", "0", "greater than 0"},
		{map[string]string{"NARWHAL_RESTART_DELAY": "0"}, "NARWHAL_RESTART_DELAY", "0", "greater than 0"},
		{map[string]string{"NARWHAL_RESTART_DELAY_MAX": "50ms"}, "NARWHAL_RESTART_DELAY_MAX", "50ms", "at least NARWHAL_RESTART_DELAY (100ms)"},
		{map[string]string{"NARWHAL_RESTART_DELAY": "2s", "NARWHAL_RESTART_DELAY_MAX": "1s"}, "NARWHAL_RESTART_DELAY_MAX", "1s", "at least NARWHAL_RESTART_DELAY (2s)"},
		{map[string]string{"NARWHAL_SIGNAL_REWRITE": "TERM"}, "NARWHAL_SIGNAL_REWRITE", "TERM", "FROM:TO"},
		{map[string]string{"NARWHAL_SIGNAL_REWRITE": "TERM:QUIT,SIGTERM:INT"}, "NARWHAL_SIGNAL_REWRITE", "TERM:QUIT,SIGTERM:INT", "twice"},
		{map[string]string{"NARWHAL_SIGNAL_REWRITE": "TERM:BOGUS"}, "NARWHAL_SIGNAL_REWRITE", "TERM:BOGUS", "FROM:TO"},
		{map[string]string{"NARWHAL_EXIT_REMAP": "143:999"}, "NARWHAL_EXIT_REMAP", "143:999", "0-255"},
		{map[string]string{"NARWHAL_EXIT_REMAP": "143:0,143:1"}, "NARWHAL_EXIT_REMAP", "143:0,143:1", "twice"},
		{map[string]string{"NARWHAL_LOG_LEVEL": "loud"}, "NARWHAL_LOG_LEVEL", "loud", "debug, info, warn, error"},
		{map[string]string{"NARWHAL_LOG_FORMAT": "xml"}, "NARWHAL_LOG_FORMAT", "xml", "auto, text, json"},
		{map[string]string{"NARWHAL_SOCKET_MODE": "share"}, "NARWHAL_SOCKET_MODE", "share", "inherit, balanced, reuseport"},
		{map[string]string{"NARWHAL_READY": "maybe"}, "NARWHAL_READY", "maybe", "auto, notify, delay"},
		{map[string]string{"NARWHAL_BACKLOG": "0"}, "NARWHAL_BACKLOG", "0", "1 to 65535"},
		{map[string]string{"NARWHAL_BACKLOG": "65536"}, "NARWHAL_BACKLOG", "65536", "1 to 65535"},
		{map[string]string{"NARWHAL_BACKLOG": "many"}, "NARWHAL_BACKLOG", "many", "whole number"},
		{map[string]string{"NARWHAL_ROLLOUT_SURGE": "0"}, "NARWHAL_ROLLOUT_SURGE", "0", "≥ 1"},
		{map[string]string{"NARWHAL_MIN_READY": "-1"}, "NARWHAL_MIN_READY", "-1", "≥ 0"},
		{map[string]string{"NARWHAL_WORKERS": "2", "NARWHAL_MIN_READY": "3"}, "NARWHAL_MIN_READY", "3", "at most 2, the most workers NARWHAL_WORKERS=2 can reach"},
		{map[string]string{"NARWHAL_WORKERS": "2-8", "NARWHAL_MIN_READY": "9"}, "NARWHAL_MIN_READY", "9", "at most 8, the most workers NARWHAL_WORKERS=2-8 can reach"},
		{map[string]string{"NARWHAL_WORKERS": "auto-4", "NARWHAL_MIN_READY": "5"}, "NARWHAL_MIN_READY", "5", "at most 4"},
		// Ready by delay after a ready timeout: every worker would time out, forever.
		{map[string]string{"NARWHAL_READY": "delay", "NARWHAL_READY_DELAY": "2s", "NARWHAL_READY_TIMEOUT": "1s"}, "NARWHAL_READY_DELAY", "2s", "less than NARWHAL_READY_TIMEOUT (1s)"},
		{map[string]string{"NARWHAL_READY": "Delay", "NARWHAL_READY_DELAY": "60s"}, "NARWHAL_READY_DELAY", "60s", "less than NARWHAL_READY_TIMEOUT (1m0s)"},
		{map[string]string{"NARWHAL_WORKERS": "2", "NARWHAL_WORKER_DIR": "/nonexistent"}, "NARWHAL_WORKER_DIR", "/nonexistent", "no such file or directory; want an existing directory"},
		{map[string]string{"NARWHAL_LISTEN": ":8080", "NARWHAL_WORKER_DIR": notDir}, "NARWHAL_WORKER_DIR", notDir, "not a directory; want an existing directory"},
		{map[string]string{"NARWHAL_WORKERS": "1", "NARWHAL_WORKER_DIR": dangling}, "NARWHAL_WORKER_DIR", dangling, "want an existing directory"},
		{map[string]string{"NARWHAL_LISTEN": "tcp4://[::1]:18510"}, "NARWHAL_LISTEN", "tcp4://[::1]:18510", "tcp4 takes an IPv4 address"},
		{map[string]string{"NARWHAL_LISTEN": "tcp6://127.0.0.1:18510"}, "NARWHAL_LISTEN", "tcp6://127.0.0.1:18510", "tcp6 takes an IPv6 address"},
		{map[string]string{"NARWHAL_LISTEN": "127.0.0.1:18601,tcp4://127.0.0.1:18601"}, "NARWHAL_LISTEN", "127.0.0.1:18601,tcp4://127.0.0.1:18601", "the same address"},
		{map[string]string{"NARWHAL_CONTROL_SOCKET": "/" + strings.Repeat("c", 107)}, "NARWHAL_CONTROL_SOCKET", "/" + strings.Repeat("c", 107), "at most 107 bytes"},
		{map[string]string{"NARWHAL_CONTROL_SOCKET": "@" + strings.Repeat("c", 120)}, "NARWHAL_CONTROL_SOCKET", "@" + strings.Repeat("c", 120), "at most 107 bytes"},
		{map[string]string{"NARWHAL_MAX_MEMORY": "lots"}, "NARWHAL_MAX_MEMORY", "lots", "512Mi"},
		{map[string]string{"NARWHAL_MAX_MEMORY": "-1Mi"}, "NARWHAL_MAX_MEMORY", "-1Mi", "512Mi"},
		{map[string]string{"NARWHAL_SIGNAL_GROUP": "yes-please"}, "NARWHAL_SIGNAL_GROUP", "yes-please", "true or false"},
		{map[string]string{"NARWHAL_METRICS_ADDR": "9090"}, "NARWHAL_METRICS_ADDR", "9090", "host:port"},
		{map[string]string{"NARWHAL_METRICS_ADDR": ":99999"}, "NARWHAL_METRICS_ADDR", ":99999", "off"},
		{map[string]string{"NARWHAL_LISTEN": ":8080", "NARWHAL_METRICS_ADDR": ":8080"}, "NARWHAL_METRICS_ADDR", ":8080", "listener listen0"},
		{map[string]string{"NARWHAL_LISTEN": "127.0.0.1:8080", "NARWHAL_METRICS_ADDR": "0.0.0.0:8080"}, "NARWHAL_METRICS_ADDR", "0.0.0.0:8080", "another port or off"},
		// Unset, the pool's metrics address is :9090, which a listener may already have.
		{map[string]string{"NARWHAL_LISTEN": "web=:9090"}, "NARWHAL_METRICS_ADDR", "", "listener web"},
		{map[string]string{"NARWHAL_WORKER_USER": "no-such-user-xyz"}, "NARWHAL_WORKER_USER", "no-such-user-xyz", "or a number"},
		{map[string]string{"NARWHAL_WORKER_GROUP": "no-such-group-xyz"}, "NARWHAL_WORKER_GROUP", "no-such-group-xyz", "or a number"},
		{map[string]string{"NARWHAL_WORKER_USER": "2147483647"}, "NARWHAL_WORKER_USER", "2147483647", "0 to 2147483646"},
		{map[string]string{"NARWHAL_WORKER_GROUP": "-1"}, "NARWHAL_WORKER_GROUP", "-1", "0 to 2147483646"},
		{map[string]string{"NARWHAL_STOP_SIGNAL": "SIGFOO"}, "NARWHAL_STOP_SIGNAL", "SIGFOO", "TERM or SIGTERM"},
		{map[string]string{"NARWHAL_STOP_SIGNAL": "0"}, "NARWHAL_STOP_SIGNAL", "0", "1-64"},
		{map[string]string{"NARWHAL_WATCH": "/etc,/no/such/config"}, "NARWHAL_WATCH", "/etc,/no/such/config", "/no/such/config: no such file or directory"},
		{map[string]string{"NARWHAL_WATCH_DELAY": "soon"}, "NARWHAL_WATCH_DELAY", "soon", "500ms"},
		{map[string]string{"NARWHAL_WORKER_OUTPUT": "yaml"}, "NARWHAL_WORKER_OUTPUT", "yaml", "inherit, json, text"},
		{map[string]string{"NARWHAL_PRE_START": "/app/migrate --to 'latest"}, "NARWHAL_PRE_START", "/app/migrate --to 'latest", "unterminated quote"},
		{map[string]string{"NARWHAL_LISTEN": "http://x:1"}, "NARWHAL_LISTEN", "http://x:1", "unix:///path"},
		{map[string]string{"NARWHAL_LISTEN": ":0"}, "NARWHAL_LISTEN", ":0", "1 to 65535"},
		{map[string]string{"NARWHAL_LISTEN": "web=:8080,web=:8081"}, "NARWHAL_LISTEN", "web=:8080,web=:8081", "twice"},
		{map[string]string{"NARWHAL_SOCKET_MODE": "reuseport", "NARWHAL_LISTEN": "unix:///tmp/app.sock"}, "NARWHAL_LISTEN", "unix:///tmp/app.sock", "TCP listener"},
		{map[string]string{"NARWHAL_CONTROL_SOCKET": "@"}, "NARWHAL_CONTROL_SOCKET", "@", "@name"},
	}
	for _, tc := range cases {
		t.Run(tc.variable+"="+tc.env[tc.variable], func(t *testing.T) {
			setEnv(t, tc.env)
			c, err := config.Load()
			if err == nil {
				t.Fatalf("Load() = %+v, want an error naming %s", *c, tc.variable)
			}
			if c != nil {
				t.Errorf("Load() returned a config along with its error")
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load() error %q is a %T, want *config.Error", err, err)
			}
			if ce.Variable != tc.variable {
				t.Errorf("error names %s, want %s: %v", ce.Variable, tc.variable, err)
			}
			msg := err.Error()
			for _, part := range []string{tc.variable, tc.value, tc.hint} {
				if !strings.Contains(msg, part) {
					t.Errorf("error %q does not contain %q", msg, part)
				}
			}
		})
	}
}

// TestLoadAcceptsCombinations: values that work together, next to the ones TestLoadRejects
// refuses; a bound Load cannot know (auto) is left to the pool, which knows the machine.
func TestLoadAcceptsCombinations(t *testing.T) {
	dir := t.TempDir()
	current := filepath.Join(t.TempDir(), "current")
	if err := os.Symlink(dir, current); err != nil {
		t.Fatal(err)
	}
	for _, env := range []map[string]string{
		{"NARWHAL_WORKERS": "2-8", "NARWHAL_MIN_READY": "3"},
		{"NARWHAL_WORKERS": "2-8", "NARWHAL_MIN_READY": "8"},
		{"NARWHAL_WORKERS": "2-auto", "NARWHAL_MIN_READY": "3"},
		{"NARWHAL_WORKERS": "auto", "NARWHAL_MIN_READY": "64"},
		{"NARWHAL_WORKERS": "3", "NARWHAL_MIN_READY": "3"},
		{"NARWHAL_READY": "delay", "NARWHAL_READY_DELAY": "999ms", "NARWHAL_READY_TIMEOUT": "1s"},
		{"NARWHAL_READY": "notify", "NARWHAL_READY_DELAY": "2s", "NARWHAL_READY_TIMEOUT": "1s"},
		{"NARWHAL_WORKERS": "1", "NARWHAL_WORKER_DIR": dir},
		{"NARWHAL_WORKERS": "1", "NARWHAL_WORKER_DIR": current},
		{"NARWHAL_WORKER_DIR": "/nonexistent"}, // init mode has no workers to run there
		{"NARWHAL_LISTEN": "127.0.0.1:18601,[::1]:18601"},
		{"NARWHAL_LISTEN": "tcp4://:18602,tcp6://[::]:18602"}, // tcp6 is IPv6 only
		{"NARWHAL_CONTROL_SOCKET": "/" + strings.Repeat("c", 106)},
		{"NARWHAL_CONTROL_SOCKET": "@" + strings.Repeat("c", 106)},
	} {
		setEnv(t, env)
		if _, err := config.Load(); err != nil {
			t.Errorf("Load() with %v: %v", env, err)
		}
	}
}

// narwhal is configured by NARWHAL_* variables only: an application's own LISTEN, WORKERS or
// LOG_LEVEL, which narwhal passes to its workers, must neither change narwhal's settings nor
// stop it from starting.
func TestLoadIgnoresUnprefixedVariables(t *testing.T) {
	setEnv(t, map[string]string{
		"LISTEN":    ":8080",
		"WORKERS":   "several",
		"LOG_LEVEL": "trace",
		"READY":     "yes",
		"BACKLOG":   "128",
	})
	c, err := config.Load()
	if err != nil {
		t.Fatalf("Load() with only unprefixed variables set: %v", err)
	}
	if c.Mode() != "init" || len(c.Listen) != 0 || c.Backlog != 1024 || c.LogLevel != "info" {
		t.Errorf("unprefixed variables were read: mode %s, listen %v, backlog %d, log level %s",
			c.Mode(), c.Listen, c.Backlog, c.LogLevel)
	}
}

func TestVariablesCoverSpec(t *testing.T) {
	t.Parallel()
	vars := config.Variables()
	for _, name := range specVariables {
		if !slices.Contains(vars, name) {
			t.Errorf("Variables() lacks %s, which SPEC.md names", name)
		}
	}
	seen := map[string]bool{}
	for _, name := range vars {
		if seen[name] {
			t.Errorf("Variables() lists %s twice", name)
		}
		seen[name] = true
		if !strings.HasPrefix(name, "NARWHAL_") {
			t.Errorf("Variables() lists %s, which lacks the NARWHAL_ prefix", name)
		}
	}
}

func TestWriteHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := config.WriteHelp(&out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	rows := map[string]string{}
	for _, line := range lines[1:] {
		name, _, _ := strings.Cut(line, " ")
		rows[name] = line
	}
	if !strings.HasPrefix(lines[0], "VARIABLE") {
		t.Errorf("first line %q is not the header", lines[0])
	}
	vars := config.Variables()
	if len(lines) != len(vars)+1 {
		t.Errorf("WriteHelp wrote %d rows, want one per variable (%d)", len(lines)-1, len(vars))
	}
	for _, name := range vars {
		if _, ok := rows[name]; !ok {
			t.Errorf("WriteHelp has no row for %s", name)
		}
	}
	for name, parts := range map[string][]string{
		"NARWHAL_STOP_TIMEOUT": {"duration", "25s"},
		"NARWHAL_BACKLOG":      {"1024"},
		"NARWHAL_WORKERS":      {"auto"},
		"NARWHAL_METRICS_ADDR": {":9090 (pool)", "off"},
		"NARWHAL_LOG_LEVEL":    {"debug|info|warn|error", "info"},
		"NARWHAL_STOP_SIGNAL":  {"SIGTERM"},
		"NARWHAL_LISTEN":       {" - "},
	} {
		for _, part := range parts {
			if !strings.Contains(rows[name], part) {
				t.Errorf("help row %q lacks %q", rows[name], part)
			}
		}
	}
}

// TestEnvTagsMatchEnvconfigKeys: the names in --help (the env tags) are the names envconfig
// reads (derived from field names with split_words); a renamed field must not drift.
func TestEnvTagsMatchEnvconfigKeys(t *testing.T) {
	var b strings.Builder
	if err := envconfig.Usagef(config.Prefix, &config.Config{}, &b, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	keys := strings.Fields(b.String())
	if !slices.Equal(keys, config.Variables()) {
		t.Errorf("envconfig reads\n%v\nbut --help lists\n%v", keys, config.Variables())
	}
}

func TestDecimalAndNumericPorts(t *testing.T) {
	t.Setenv("NARWHAL_BACKLOG", "010")
	t.Setenv("NARWHAL_LISTEN", ":08080")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Backlog != 10 {
		t.Errorf("NARWHAL_BACKLOG=010 read as %d, want 10", c.Backlog)
	}
	if c.Listen[0].Port() != 8080 || c.Listen[0].Address != ":8080" {
		t.Errorf("NARWHAL_LISTEN=:08080 read as %+v", c.Listen[0])
	}
	t.Setenv("NARWHAL_METRICS_ADDR", ":8080")
	if _, err := config.Load(); err == nil {
		t.Error("metrics on :8080 with a listener on :08080 (the same port) was accepted")
	}
}

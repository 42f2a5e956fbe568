package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/board"
)

func serve(t *testing.T, b *board.Board) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(name, b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
	return name
}

func TestStatusAndHealthcheck(t *testing.T) {
	b := board.New(2, 0)
	b.Publish(&board.Snapshot{Mode: "pool", Generation: 3, Desired: 2, ReadyCount: 1, Workers: []board.Worker{
		{Slot: 0, PID: 1 << 30, Generation: 3, State: "ready", Started: time.Now().Add(-time.Minute)},
		{Slot: 1, PID: 1<<30 + 1, Generation: 3, State: "starting", Started: time.Now()},
	}})
	name := serve(t, b)
	raw, err := GetStatus(name)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != "pool" || st.Generation != 3 || st.Ready || st.Desired != 2 || len(st.Workers) != 2 {
		t.Errorf("status = %+v", st)
	}
	if w := st.Workers[0]; w.UptimeSeconds < 59 || w.State != "ready" || w.Slot != 0 {
		t.Errorf("worker 0 = %+v", w)
	}
	for _, field := range []string{`"slot"`, `"pid"`, `"generation"`, `"state"`, `"uptime_seconds"`, `"restarts"`, `"memory_bytes"`, `"draining"`} {
		if !strings.Contains(string(raw), field) {
			t.Errorf("--status JSON lacks %s: %s", field, raw)
		}
	}
	ready, reason, err := Healthcheck(name)
	if err != nil || ready || !strings.Contains(reason, "NARWHAL_MIN_READY") {
		t.Errorf("Healthcheck with 1 of 2 ready = %v %q %v", ready, reason, err)
	}
	b.Publish(&board.Snapshot{Mode: "pool", ReadyCount: 2})
	if ready, _, err := Healthcheck(name); err != nil || !ready {
		t.Errorf("Healthcheck with 2 ready = %v %v", ready, err)
	}
}

// TestDrain: unready at once, and the client returns only after the server's delay.
func TestDrain(t *testing.T) {
	const delay = 200 * time.Millisecond
	b := board.New(1, delay)
	b.Publish(&board.Snapshot{Mode: "pool", ReadyCount: 1})
	name := serve(t, b)
	start := time.Now()
	var told time.Duration
	if err := Drain(name, func(d time.Duration) {
		told = d
		if ok, _ := b.Ready(); ok {
			t.Error("still ready when the server said it was draining")
		}
	}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < delay {
		t.Errorf("Drain returned after %s, before the server's %s", el, delay)
	}
	if told != delay || !b.Draining() {
		t.Errorf("told %s, draining %v", told, b.Draining())
	}
}

func TestUnknownRequestAndNoServer(t *testing.T) {
	name := serve(t, board.New(1, 0))
	c, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "reboot\n")
	var r map[string]string
	if err := json.NewDecoder(c).Decode(&r); err != nil || !strings.Contains(r["error"], "unknown request") {
		t.Errorf("unknown request answered %v, %v", r, err)
	}
	if _, err := GetStatus(filepath.Join(t.TempDir(), "nobody.sock")); !errors.Is(err, ErrNoAnswer) {
		t.Errorf("GetStatus with nothing listening: %v, want ErrNoAnswer", err)
	}
}

func TestDefaultName(t *testing.T) {
	name := DefaultName()
	if !strings.HasPrefix(name, "@narwhal-") || len(name) <= len("@narwhal-") {
		t.Errorf("DefaultName() = %q, want @narwhal-<pid namespace>", name)
	}
	if Name("@custom") != "@custom" || Name("") != name {
		t.Error("Name does not prefer the configured socket")
	}
}

package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/status"
)

func do(h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

// TestLivezFollowsTheLoop: /livez is 200 while something serves the board's pings (the
// supervising loop) and 503 once it stops answering, here by the test holding the loop.
func TestLivezFollowsTheLoop(t *testing.T) {
	b := status.New(1, 0)
	h := Handler(Registry(New(b, func() uint64 { return 0 }, "test")), b, 50*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	stall := make(chan struct{}) // unbuffered: a send returns once the loop has taken it
	loopDone := make(chan struct{})
	go func() { // the loop: answers pings until told to stall
		defer close(loopDone)
		for {
			select {
			case done := <-b.Pings():
				close(done)
			case <-stall:
				<-ctx.Done() // stuck: never looks at the pings again
				return
			}
		}
	}()
	if code, body := do(h, "/livez"); code != 200 {
		t.Fatalf("/livez with a live loop = %d %q", code, body)
	}
	if code, _ := do(h, "/healthz"); code != 200 {
		t.Fatalf("/healthz with a live loop = %d", code)
	}
	stall <- struct{}{}
	code, body := do(h, "/livez")
	if code != 503 || !strings.Contains(body, "did not answer") {
		t.Errorf("/livez with a stuck loop = %d %q, want 503", code, body)
	}
	cancel()
	<-loopDone
}

func TestReadyzFollowsTheBoard(t *testing.T) {
	b := status.New(2, 0)
	h := Handler(Registry(New(b, func() uint64 { return 0 }, "test")), b, time.Second)
	steps := []struct {
		name string
		snap *status.Snapshot
		act  func()
		code int
		want string
	}{
		{"nothing started", &status.Snapshot{}, nil, 503, "starting"},
		{"one of two ready", &status.Snapshot{Mode: "pool", ReadyCount: 1}, nil, 503, "NARWHAL_MIN_READY"},
		{"two ready", &status.Snapshot{Mode: "pool", ReadyCount: 2}, nil, 200, "ok"},
		{"stopping", &status.Snapshot{Mode: "pool", ReadyCount: 2, Stopping: true}, nil, 503, "stopping"},
		{"draining", &status.Snapshot{Mode: "pool", ReadyCount: 2}, func() { b.Drain(time.Now()) }, 503, "draining"},
	}
	for _, s := range steps {
		b.Publish(s.snap)
		if s.act != nil {
			s.act()
		}
		code, body := do(h, "/readyz")
		if code != s.code || !strings.Contains(body, s.want) {
			t.Errorf("%s: /readyz = %d %q, want %d %q", s.name, code, body, s.code, s.want)
		}
	}
	code, body := do(h, "/readyz?verbose")
	if code != 503 || !strings.Contains(body, "[-]not-draining") || !strings.Contains(body, "[+]workers") {
		t.Errorf("/readyz?verbose = %d %q", code, body)
	}
}

// TestInFlightLimit: requests beyond the limit get 503 at once instead of queueing.
func TestInFlightLimit(t *testing.T) {
	entered, block := make(chan struct{}), make(chan struct{})
	h := limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-block
	}), 1)
	done := make(chan struct{})
	go func() { do(h, "/"); close(done) }()
	select {
	case <-entered: // the first request holds the only place
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never reached the handler")
	}
	if code, _ := do(h, "/"); code != 503 {
		t.Errorf("a second request in flight got %d, want 503", code)
	}
	close(block)
	<-done
}

// Package loadgen is the HTTP load that the end-to-end tests and the benchmarks send to a pool:
// clients that open a fresh connection per request beside clients that keep theirs alive, all
// sending until stopped. Every request is recorded, with when it began, how long it took, which
// process answered and why it failed, so a test can count failures and a benchmark can take
// percentiles from the same record.
package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one request as the load saw it.
type Request struct {
	Start   time.Time
	Latency time.Duration
	PID     int   // the "pid" of the JSON answer; 0 when there was none
	Err     error // nil for a 200 answer read whole
}

// Load sends GET url from its clients until Stop. Sent and Failed count as it goes.
type Load struct {
	Sent, Failed atomic.Int64

	mu     sync.Mutex
	reqs   []Request
	errs   []string // the first failures, for a test's message
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  []*http.Transport
}

// Start begins sending GET url from fresh clients that open a new connection per request and
// keepalive clients that keep one.
func Start(url string, fresh, keepalive int) *Load {
	return StartVia(url, fresh, keepalive, nil)
}

// Dial opens a client's connections, as net.Dialer.DialContext does.
type Dial func(ctx context.Context, network, addr string) (net.Conn, error)

// StartVia is Start with the clients' connections opened by dial (nil: the default dialer),
// for a server reachable only from another network namespace.
func StartVia(url string, fresh, keepalive int, dial Dial) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel}
	for i := range fresh + keepalive {
		keep := i >= fresh
		conns := &http.Transport{DisableKeepAlives: !keep, MaxIdleConnsPerHost: 1, DialContext: dial}
		l.conns = append(l.conns, conns)
		c := &http.Client{Timeout: 10 * time.Second, Transport: conns}
		kind := map[bool]string{false: "fresh connection", true: "keep-alive"}[keep]
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				l.one(ctx, c, url, kind)
			}
		}()
	}
	return l
}

func (l *Load) one(ctx context.Context, c *http.Client, url, kind string) {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := c.Do(req)
	pid := 0
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %s", resp.Status)
		}
		var hello struct{ PID int }
		if err == nil && json.Unmarshal(body, &hello) == nil {
			pid = hello.PID
		}
	}
	if ctx.Err() != nil {
		return // cut off by Stop, not by the server
	}
	r := Request{Start: start, Latency: time.Since(start), PID: pid, Err: err}
	l.Sent.Add(1)
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	if err != nil {
		l.Failed.Add(1)
		if len(l.errs) < 10 {
			l.errs = append(l.errs, time.Now().UTC().Format("15:04:05.000000")+" "+kind+": "+err.Error())
		}
	}
	l.mu.Unlock()
	if err != nil {
		// A request refused at once would otherwise spin; a real client would back off too.
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop ends the load, waits for its clients, closes their connections, and returns every
// request it recorded. It is safe to call twice.
//
// Closing matters: a dial that was under way when its request was cancelled still completes,
// and its connection waits in the client's idle pool; a server that gives each accepted
// connection a whole worker (gunicorn's sync workers) would wait on it for ever.
func (l *Load) Stop() []Request {
	l.cancel()
	l.wg.Wait()
	for _, conns := range l.conns {
		conns.CloseIdleConnections() // and those that become idle later
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reqs
}

// Errors are the first failures seen, one a line.
func (l *Load) Errors() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.errs, "\n")
}

// Since returns the PIDs that answered requests begun after t.
func (l *Load) Since(t time.Time) map[int]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	pids := map[int]bool{}
	for i := len(l.reqs) - 1; i >= 0 && l.reqs[i].Start.After(t); i-- {
		if p := l.reqs[i].PID; p != 0 {
			pids[p] = true
		}
	}
	return pids
}

// Percentile p of the latencies of reqs, in milliseconds. Failures count: a refused or stalled
// request is part of what a user sees.
func Percentile(reqs []Request, p float64) float64 {
	if len(reqs) == 0 {
		return 0
	}
	ms := make([]float64, len(reqs))
	for i, r := range reqs {
		ms[i] = float64(r.Latency.Microseconds()) / 1000
	}
	slices.Sort(ms)
	return ms[min(len(ms)-1, int(p/100*float64(len(ms))))]
}

// Between returns the requests of reqs begun in [from, to).
func Between(reqs []Request, from, to time.Time) []Request {
	var out []Request
	for _, r := range reqs {
		if !r.Start.Before(from) && r.Start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// Failed counts the requests of reqs that failed.
func Failed(reqs []Request) int {
	n := 0
	for _, r := range reqs {
		if r.Err != nil {
			n++
		}
	}
	return n
}

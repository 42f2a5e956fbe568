package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// A request as the load saw it: when it started, how long it took, and which process answered
// (0 when it failed).
type request struct {
	start   time.Time
	latency time.Duration
	pid     int
}

// load sends GET / from clients that each open a fresh connection per request and from clients
// that keep theirs alive, all the time until stopped, and records every request.
type load struct {
	mu     sync.Mutex
	reqs   []request
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoad(url string, fresh, keepalive int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for i := range fresh + keepalive {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: i < fresh, MaxIdleConnsPerHost: 1}}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				l.one(ctx, c, url)
			}
		}()
	}
	return l
}

func (l *load) one(ctx context.Context, c *http.Client, url string) {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	pid := 0
	resp, err := c.Do(req)
	if err == nil {
		var hello struct{ PID int }
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && resp.StatusCode == 200 && json.Unmarshal(body, &hello) == nil {
			pid = hello.PID
		}
	} else {
		// A request that failed at once (connection refused) would otherwise spin; the
		// managers' own clients would back off too.
		time.Sleep(10 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return // cut off by the end of the run, not by the server
	}
	l.mu.Lock()
	l.reqs = append(l.reqs, request{start: start, latency: time.Since(start), pid: pid})
	l.mu.Unlock()
}

func (l *load) stop() []request {
	l.cancel()
	l.wg.Wait()
	return l.reqs
}

// since returns the PIDs that answered requests started after t.
func (l *load) since(t time.Time) map[int]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	pids := map[int]bool{}
	for i := len(l.reqs) - 1; i >= 0 && l.reqs[i].start.After(t); i-- {
		if p := l.reqs[i].pid; p != 0 {
			pids[p] = true
		}
	}
	return pids
}

// percentile of the latencies of reqs (all of them, failures included: a refused or stalled
// request is part of what a user sees), in milliseconds.
func percentile(reqs []request, p float64) float64 {
	if len(reqs) == 0 {
		return 0
	}
	ms := make([]float64, len(reqs))
	for i, r := range reqs {
		ms[i] = float64(r.latency.Microseconds()) / 1000
	}
	slices.Sort(ms)
	return ms[min(len(ms)-1, int(p/100*float64(len(ms))))]
}

func between(reqs []request, from, to time.Time) []request {
	var out []request
	for _, r := range reqs {
		if !r.start.Before(from) && r.start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

func failed(reqs []request) int {
	n := 0
	for _, r := range reqs {
		if r.pid == 0 {
			n++
		}
	}
	return n
}

// Command load sends a fixed number of GET requests from a few concurrent clients, each request
// on a new connection so that the kernel spreads them over the workers as it spreads clients',
// and prints one line: "responses=N failed=N pids=N", pids being how many distinct pids
// answered (the apps of bench/memory.sh answer {"pid": N, ...}). The whole run is bounded by
// -timeout; what is left unsent then counts as failed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8000/", "the URL to GET")
	n := flag.Int("n", 2000, "requests in all")
	c := flag.Int("c", 4, "concurrent clients")
	timeout := flag.Duration("timeout", 2*time.Minute, "bound on the whole run")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
	var next, ok atomic.Int64
	var mu sync.Mutex
	pids := map[int]bool{}
	var wg sync.WaitGroup
	for range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) && ctx.Err() == nil {
				pid, err := get(ctx, client, *url)
				if err != nil {
					continue
				}
				ok.Add(1)
				mu.Lock()
				pids[pid] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("responses=%d failed=%d pids=%d\n", ok.Load(), int64(*n)-ok.Load(), len(pids))
	if ok.Load() < int64(*n) {
		os.Exit(1)
	}
}

// get returns the pid a 200 response names.
func get(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var v struct{ Pid int }
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return v.Pid, nil
}

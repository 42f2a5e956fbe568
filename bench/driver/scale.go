package main

import (
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/internal/loadgen"
	"github.com/narwhal-init/narwhal/internal/proc"
)

// A step of the open-loop load: this many requests a second, for this long.
type step struct {
	rate int
	d    time.Duration
}

var steps = []step{{20, 10 * time.Second}, {120, 20 * time.Second}, {20, 20 * time.Second}}

// scale runs the stepped load against narwhal pools of gunicorn workers: fixed at MIN, fixed at
// MAX, and the range MIN-MAX that narwhal sizes from the accept queue.
func scale(root string) {
	fmt.Printf("Load: %s, Poisson arrivals, each request on a fresh connection, sent on schedule whatever the answers (open loop).\n\n", describeSteps())
	fmt.Println("| pool | sent | failed | p50 ms | p99 ms | p99 ms at 120/s | workers | worker-seconds |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
	var timeline string
	for _, workers := range []string{"1", "4", "1-4"} {
		res, sizes, err := scaleRun(root, workers)
		if err != nil {
			log.Printf("NARWHAL_WORKERS=%s: %v", workers, err)
		}
		fmt.Println(res)
		if workers == "1-4" {
			timeline = sizes
		}
	}
	fmt.Printf("\nWorkers of the 1-4 pool, each second: %s\n", timeline)
}

func describeSteps() string {
	var parts []string
	for _, s := range steps {
		parts = append(parts, fmt.Sprintf("%d requests/s for %s", s.rate, s.d))
	}
	return strings.Join(parts, ", then ")
}

func scaleRun(root, workers string) (string, string, error) {
	port, err := freePort()
	if err != nil {
		return "", "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := execIn(filepath.Join(root, "bench/driver"), []string{"NARWHAL_WORKERS=" + workers, "NARWHAL_LISTEN=" + addr,
		"NARWHAL_METRICS_ADDR=off", "NARWHAL_SCALE_DOWN_AFTER=5s", "NARWHAL_LOG_FORMAT=text"},
		filepath.Join(root, "bin/narwhal"), "gunicorn", "scale_app:app")
	out, _ := os.Create(filepath.Join(os.TempDir(), "narwhal-scale-"+workers+".log"))
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", "", err
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
	row := fmt.Sprintf("| NARWHAL_WORKERS=%s | not serving |", workers)
	if !waitServing("http://"+addr+"/", 30*time.Second) {
		return row, "", fmt.Errorf("not serving")
	}
	time.Sleep(time.Second) // every worker of a fixed pool up

	// The size, sampled every 250 ms while the load runs.
	var sizes []int
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for t := time.NewTicker(250 * time.Millisecond); ; {
			select {
			case <-stopSampling:
				t.Stop()
				return
			case <-t.C:
				sizes = append(sizes, len(children(proc.Host.Snapshot(), cmd.Process.Pid)))
			}
		}
	}()
	reqs, highFrom, highTo := openLoop("http://" + addr + "/")
	close(stopSampling)
	<-sampled

	high := loadgen.Between(reqs, highFrom, highTo)
	least, most, total := 0, 0, 0
	if len(sizes) > 0 {
		least, most = slices.Min(sizes), slices.Max(sizes)
	}
	var perSecond []string
	for i, n := range sizes {
		total += n
		if i%4 == 3 {
			perSecond = append(perSecond, strconv.Itoa(n))
		}
	}
	row = fmt.Sprintf("| NARWHAL_WORKERS=%s | %d | %d | %.1f | %.1f | %.1f | %d–%d | %.0f |", workers, len(reqs), loadgen.Failed(reqs),
		loadgen.Percentile(reqs, 50), loadgen.Percentile(reqs, 99), loadgen.Percentile(high, 99), least, most, float64(total)/4)
	return row, strings.Join(perSecond, " "), nil
}

// openLoop sends the steps' requests on schedule, each in its own goroutine on a fresh
// connection, and waits for the answers. It returns them, and when the highest step ran.
func openLoop(url string) (reqs []loadgen.Request, highFrom, highTo time.Time) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	top := slices.MaxFunc(steps, func(a, b step) int { return a.rate - b.rate })
	for _, s := range steps {
		from := time.Now()
		if s == top {
			highFrom = from
		}
		// Poisson arrivals, as from many independent users: evenly spaced ones would never
		// queue while the pool keeps up, which flatters any size.
		mean := float64(time.Second) / float64(s.rate)
		for next := from; next.Before(from.Add(s.d)); next = next.Add(time.Duration(rand.ExpFloat64() * mean)) {
			time.Sleep(time.Until(next))
			wg.Add(1)
			go func(start time.Time) {
				defer wg.Done()
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				mu.Lock()
				reqs = append(reqs, loadgen.Request{Start: start, Latency: time.Since(start), Err: err})
				mu.Unlock()
			}(next)
		}
		if s == top {
			highTo = time.Now()
		}
	}
	wg.Wait()
	return reqs, highFrom, highTo
}

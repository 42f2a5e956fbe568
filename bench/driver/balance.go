package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/internal/loadgen"
	"github.com/narwhal-init/narwhal/internal/proc"
)

// balance: how evenly four workers share the connections, per NARWHAL_SOCKET_MODE and beside
// node's cluster module, and whether rollouts and a SIGKILL under load lose a request.

// A runner starts four workers of an app on a port.
type runner struct {
	name, app string
	start     func(root string, port int) *exec.Cmd
	narwhal   bool // logs its rollouts; restarts by SIGHUP
}

func narwhalRunner(mode, app string) runner {
	return runner{name: "narwhal " + mode, app: app, narwhal: true, start: func(root string, port int) *exec.Cmd {
		cmd := exec.Command(filepath.Join(root, "bin/narwhal"), appArgs(root, app)...)
		cmd.Env = append(os.Environ(), "NARWHAL_WORKERS=4", "NARWHAL_SOCKET_MODE="+mode,
			"NARWHAL_LISTEN=127.0.0.1:"+strconv.Itoa(port), "NARWHAL_METRICS_ADDR=off", "NARWHAL_LOG_FORMAT=json")
		return cmd
	}}
}

func appArgs(root, app string) []string {
	if app == "node" {
		return []string{"node", filepath.Join(root, "examples/node/server.js")}
	}
	return []string{filepath.Join(root, "bin/example-go")}
}

var runners = []runner{
	narwhalRunner("inherit", "node"),
	narwhalRunner("balanced", "node"),
	// Node 20 has no reusePort: reuseport mode needs Node 22.12 or later.
	{name: "node cluster", app: "node", start: func(root string, port int) *exec.Cmd {
		cmd := exec.Command("node", filepath.Join(root, "bench/driver/cluster.js"), filepath.Join(root, "examples/node/server.js"))
		cmd.Env = append(os.Environ(), "WORKERS=4", "PORT="+strconv.Itoa(port))
		return cmd
	}},
	narwhalRunner("inherit", "go"),
	narwhalRunner("balanced", "go"),
	narwhalRunner("reuseport", "go"),
}

// running is one runner's process, with its log.
type running struct {
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	logs strings.Builder
}

// steeringLog is narwhal's line saying how balanced mode steers.
var steeringLog = regexp.MustCompile(`"steering":"([a-z-]+)"`)

func (r *running) logged() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

func (r *running) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Count(r.logs.String(), s)
}

func startRunner(root string, rn runner) (*running, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &running{cmd: rn.start(root, port), url: fmt.Sprintf("http://127.0.0.1:%d/", port)}
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := r.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	r.cmd.Stdout = io.Discard
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.mu.Lock()
			r.logs.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
		}
	}()
	// Ready when all four workers have answered.
	seen := map[int]bool{}
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := time.Now().Add(20 * time.Second); len(seen) < 4; {
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("%s: %d of 4 workers answered within 20s", rn.name, len(seen))
		}
		if pid, err := hit(c, r.url); err == nil {
			seen[pid] = true
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return r, nil
}

func (r *running) stop() {
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func hit(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var h struct{ PID int }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d: %v", resp.StatusCode, err)
	}
	return h.PID, nil
}

// share is one closed-loop run: clients each send their requests one after another.
type share struct {
	perWorker []int // requests per worker, most first
	rps, p99  float64
	failed    int
}

// ratio is the busiest worker's requests over the idlest's; +Inf when a worker got none.
func (s share) ratio() float64 {
	return float64(s.perWorker[0]) / float64(s.perWorker[len(s.perWorker)-1])
}

func measure(url string, clients, each int, keepAlive bool) share {
	var mu sync.Mutex
	counts := map[int]int{}
	var lat []time.Duration
	failed := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}}
			for range each {
				t := time.Now()
				pid, err := hit(c, url)
				d := time.Since(t)
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					failed++
				} else {
					counts[pid]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	var s share
	for _, n := range counts {
		s.perWorker = append(s.perWorker, n)
	}
	for len(s.perWorker) < 4 {
		s.perWorker = append(s.perWorker, 0) // a worker that got nothing
	}
	slices.Sort(s.perWorker)
	slices.Reverse(s.perWorker)
	slices.Sort(lat)
	s.rps = float64(clients*each) / took.Seconds()
	s.p99 = float64(lat[len(lat)*99/100].Microseconds()) / 1000
	s.failed = failed
	return s
}

func balance(root string, args []string) {
	fs := flag.NewFlagSet("balance", flag.ExitOnError)
	runs := fs.Int("runs", 5, "runs per row; the table shows medians")
	requests := fs.Int("requests", 4000, "requests per run on new connections (five times as many on keep-alive)")
	fs.Parse(args)
	const clients = 8

	fmt.Println("### Share of requests per worker")
	fmt.Println()
	fmt.Println("| app | runner | connections | max/min (median) | max/min of each run | requests per worker (median run) | req/s | p99 ms | failed |")
	fmt.Println("| --- | --- | --- | ---: | --- | --- | ---: | ---: | ---: |")
	for _, rn := range runners {
		for _, keep := range []bool{false, true} {
			each := *requests / clients
			kind := "new per request"
			if keep {
				each, kind = each*5, "keep-alive"
			}
			var results []share
			name := rn.name
			for range *runs {
				r, err := startRunner(root, rn)
				if err != nil {
					log.Print(err)
					continue
				}
				if m := steeringLog.FindStringSubmatch(r.logged()); m != nil {
					name = rn.name + " (" + m[1] + ")"
				}
				results = append(results, measure(r.url, clients, each, keep))
				r.stop()
			}
			if len(results) == 0 {
				continue
			}
			slices.SortFunc(results, func(a, b share) int { return cmp.Compare(a.ratio(), b.ratio()) })
			ratios := make([]string, len(results))
			for i, s := range results {
				ratios[i] = ratio(s.ratio())
			}
			med := results[len(results)/2]
			rps, p99, failed := make([]float64, 0), make([]float64, 0), 0
			for _, s := range results {
				rps, p99, failed = append(rps, s.rps), append(p99, s.p99), failed+s.failed
			}
			fmt.Printf("| %s | %s | %s | %s | %s | %v | %.0f | %.1f | %d |\n", rn.app, name, kind, ratio(med.ratio()),
				strings.Join(ratios, ", "), med.perWorker, median(rps), median(p99), failed)
		}
	}
	fmt.Println()

	fmt.Println("### Rollouts and a SIGKILL under load")
	fmt.Println()
	fmt.Println("| app | runner | rollouts | sent | failed | after SIGKILL: sent | failed |")
	fmt.Println("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, rn := range runners {
		if !rn.narwhal || strings.HasSuffix(rn.name, "reuseport") {
			continue
		}
		if line, err := restarts(root, rn); err != nil {
			log.Printf("%s %s: %v", rn.app, rn.name, err)
		} else {
			fmt.Println(line)
		}
	}
	fmt.Println()
}

// restarts runs ten rolling restarts under load, then kills a worker with SIGKILL under load.
func restarts(root string, rn runner) (string, error) {
	r, err := startRunner(root, rn)
	if err != nil {
		return "", err
	}
	defer r.stop()
	wait := func(s string, n int) error {
		for deadline := time.Now().Add(60 * time.Second); r.count(s) < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				return fmt.Errorf("%d %s within 60s, want %d", r.count(s), s, n)
			}
		}
		return nil
	}
	l := loadgen.Start(r.url, 4, 2)
	for i := 1; i <= 10; i++ {
		r.cmd.Process.Signal(syscall.SIGHUP)
		if err := wait(`"event":"rollout_completed"`, i); err != nil {
			l.Stop()
			return "", err
		}
	}
	rolled := l.Stop()
	ready := r.count(`"event":"ready"`)
	snap := proc.Host.Snapshot()
	kids := children(snap, r.cmd.Process.Pid)
	if len(kids) == 0 {
		return "", fmt.Errorf("no workers to kill")
	}
	l = loadgen.Start(r.url, 4, 2)
	time.Sleep(500 * time.Millisecond) // load before the kill, measured
	syscall.Kill(kids[0], syscall.SIGKILL)
	if err := wait(`"event":"ready"`, ready+1); err != nil {
		l.Stop()
		return "", err
	}
	time.Sleep(500 * time.Millisecond) // and after the replacement
	killed := l.Stop()
	return fmt.Sprintf("| %s | %s | 10 | %d | %d | %d | %d |", rn.app, rn.name, len(rolled), loadgen.Failed(rolled), len(killed), loadgen.Failed(killed)), nil
}

func ratio(r float64) string {
	if math.IsInf(r, 1) {
		return "∞"
	}
	return fmt.Sprintf("%.2f", r)
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

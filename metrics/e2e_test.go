//go:build e2e

package metrics_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/loadgen"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const timeout = 30 * time.Second

type pool struct {
	*e2e.Proc
	app, metrics string
}

func startPool(t *testing.T, env []string, cmd ...string) pool {
	t.Helper()
	return startPoolIn(t, "", env, cmd...)
}

// startPoolIn starts the pool in cgroup (a directory; "" is the test's own).
func startPoolIn(t *testing.T, cgroup string, env []string, cmd ...string) pool {
	t.Helper()
	app, mport := e2e.FreePort(t), e2e.FreePort(t)
	env = append([]string{
		"NARWHAL_LISTEN=127.0.0.1:" + strconv.Itoa(app),
		"NARWHAL_METRICS_ADDR=127.0.0.1:" + strconv.Itoa(mport),
	}, env...)
	p := e2e.Start(t, e2e.Options{Env: env, Cgroup: cgroup}, cmd...)
	return pool{p, fmt.Sprintf("http://127.0.0.1:%d", app), fmt.Sprintf("http://127.0.0.1:%d", mport)}
}

func (p pool) events(t *testing.T, event string, n int) {
	t.Helper()
	if !e2e.Eventually(timeout, func() bool { return e2e.Count(p.Stderr(), `"event":"`+event+`"`) >= n }) {
		t.Fatalf("%d %q events, want %d", e2e.Count(p.Stderr(), `"event":"`+event+`"`), event, n)
	}
}

func get(url string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(url + "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the metric of fam whose labels include want, or -1.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetricsOfTheSpec: every metric of the SPEC's table, with its type and labels, and values
// that move with what happens.
func TestMetricsOfTheSpec(t *testing.T) {
	e2e.Require(t)
	// The worker leaves an orphan behind at start (a backgrounded sleep whose parent exits).
	script := "(sleep 0.01 &); exec " + e2e.Example(t, "go")[0]
	p := startPool(t, []string{"NARWHAL_WORKERS=2"}, "sh", "-c", script)
	p.events(t, "ready", 2)
	want := []struct {
		name   string
		typ    dto.MetricType
		labels []string
	}{
		{"narwhal_build_info", dto.MetricType_GAUGE, []string{"version", "goversion"}},
		{"narwhal_workers_desired", dto.MetricType_GAUGE, nil},
		{"narwhal_workers", dto.MetricType_GAUGE, []string{"state"}},
		{"narwhal_worker_starts_total", dto.MetricType_COUNTER, nil},
		{"narwhal_worker_exits_total", dto.MetricType_COUNTER, []string{"reason"}},
		{"narwhal_worker_ready_seconds", dto.MetricType_HISTOGRAM, nil},
		{"narwhal_generation", dto.MetricType_GAUGE, nil},
		{"narwhal_rollouts_total", dto.MetricType_COUNTER, []string{"result"}},
		{"narwhal_rollout_duration_seconds", dto.MetricType_HISTOGRAM, nil},
		{"narwhal_orphans_reaped_total", dto.MetricType_COUNTER, nil},
		{"narwhal_signals_received_total", dto.MetricType_COUNTER, []string{"signal"}},
		{"narwhal_ready", dto.MetricType_GAUGE, nil},
		{"narwhal_draining", dto.MetricType_GAUGE, nil},
		{"narwhal_listener_queued_connections", dto.MetricType_GAUGE, []string{"listener"}},
		{"narwhal_listener_backlog", dto.MetricType_GAUGE, []string{"listener"}},
		{"narwhal_worker_resident_memory_bytes", dto.MetricType_GAUGE, []string{"slot"}},
		{"narwhal_worker_cpu_seconds_total", dto.MetricType_COUNTER, []string{"slot"}},
		{"narwhal_listen_overflows_total", dto.MetricType_COUNTER, nil},
		{"narwhal_memory_limit_bytes", dto.MetricType_GAUGE, nil},
		{"narwhal_memory_working_set_bytes", dto.MetricType_GAUGE, nil},
		{"go_goroutines", dto.MetricType_GAUGE, nil},
		{"process_resident_memory_bytes", dto.MetricType_GAUGE, nil},
	}
	p.Signal(syscall.SIGHUP)
	p.events(t, "rollout_completed", 1)
	// The last old worker may still be draining; kill a new one, once only they remain.
	if !e2e.Eventually(timeout, func() bool { return len(e2e.Children(p.PID)) == 2 }) {
		t.Fatalf("children after the rollout: %v", e2e.Children(p.PID))
	}
	syscall.Kill(e2e.Children(p.PID)[0], syscall.SIGKILL)
	p.events(t, "ready", 5)
	// The log line comes a moment before the snapshot the metrics read is published.
	e2e.Eventually(timeout, func() bool {
		f := scrape(t, p.metrics)
		return value(f, "narwhal_workers", "state", "ready") >= 2 && value(f, "narwhal_worker_ready_seconds") >= 5
	})
	fams := scrape(t, p.metrics)
	for _, w := range want {
		f := fams[w.name]
		if f == nil {
			t.Errorf("%s missing", w.name)
			continue
		}
		if f.GetType() != w.typ {
			t.Errorf("%s is a %s, want %s", w.name, f.GetType(), w.typ)
		}
		for _, m := range f.Metric {
			var got []string
			for _, l := range m.Label {
				got = append(got, l.GetName())
			}
			sort.Strings(got)
			wantLabels := append([]string(nil), w.labels...)
			sort.Strings(wantLabels)
			if strings.Join(got, ",") != strings.Join(wantLabels, ",") {
				t.Errorf("%s has labels %v, want %v", w.name, got, w.labels)
			}
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"narwhal_worker_starts_total", nil, 5},
		{"narwhal_worker_exits_total", []string{"reason", "stop"}, 2},
		{"narwhal_worker_exits_total", []string{"reason", "crash"}, 1},
		{"narwhal_generation", nil, 2},
		{"narwhal_rollouts_total", []string{"result", "completed"}, 1},
		{"narwhal_rollout_duration_seconds", nil, 1},
		{"narwhal_worker_ready_seconds", nil, 5},
		{"narwhal_signals_received_total", []string{"signal", "SIGHUP"}, 1},
		{"narwhal_orphans_reaped_total", nil, 1},
		{"narwhal_ready", nil, 1},
		{"narwhal_workers", []string{"state", "ready"}, 2},
		{"narwhal_workers_desired", nil, 2},
		{"narwhal_listener_backlog", []string{"listener", "listen0"}, 1},
		{"narwhal_worker_resident_memory_bytes", []string{"slot", "0"}, 1 << 20},
	} {
		if got := value(fams, c.name, c.labels...); got < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, got, c.min)
		}
	}
}

// TestAcceptQueueGauge: with no worker accepting (SIGWINCH emptied the pool), N connections
// wait in the backlog and the gauge says N.
func TestAcceptQueueGauge(t *testing.T) {
	e2e.Require(t)
	p := startPool(t, []string{"NARWHAL_WORKERS=1"}, e2e.Example(t, "go")...)
	p.events(t, "ready", 1)
	p.Signal(syscall.SIGWINCH)
	p.events(t, "exit", 1)
	const n = 7
	addr := strings.TrimPrefix(p.app, "http://")
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	var got float64
	ok := e2e.Eventually(timeout, func() bool {
		got = value(scrape(t, p.metrics), "narwhal_listener_queued_connections", "listener", "listen0")
		return got == n
	})
	if !ok {
		t.Fatalf("narwhal_listener_queued_connections = %v, want %d", got, n)
	}
}

// TestReadyz: 503 before the first worker is ready, 200 after, 503 at once after --drain while
// requests still succeed, and 503 during a graceful stop.
func TestReadyz(t *testing.T) {
	e2e.Require(t)
	p := startPool(t, []string{"NARWHAL_WORKERS=1", "BOOT_DELAY=1500ms", "NARWHAL_DRAIN_DELAY=1s"}, e2e.Example(t, "go")...)
	var code int
	var body string
	if !e2e.Eventually(timeout, func() bool { code, body = get(p.metrics + "/readyz"); return code != 0 }) {
		t.Fatal("/readyz never answered")
	}
	if code != 503 || !(strings.Contains(body, "ready workers") || strings.Contains(body, "starting")) {
		t.Errorf("/readyz while the worker boots = %d %q, want 503 with a reason", code, body)
	}
	if c, _ := get(p.metrics + "/livez"); c != 200 {
		t.Errorf("/livez while the worker boots = %d, want 200", c)
	}
	if !e2e.Eventually(timeout, func() bool { code, _ = get(p.metrics + "/readyz"); return code == 200 }) {
		t.Fatalf("/readyz = %d after the worker became ready", code)
	}

	// --drain turns /readyz 503 at once, returns after the server's 1s drain delay, and the
	// worker keeps serving.
	drained := make(chan int, 1)
	start := time.Now()
	go func() { c, _, _ := p.Client(-1, "--drain"); drained <- c }()
	if !e2e.Eventually(5*time.Second, func() bool { code, body = get(p.metrics + "/readyz"); return code == 503 }) {
		t.Fatal("/readyz still 200 after --drain")
	}
	if !strings.Contains(body, "draining") {
		t.Errorf("/readyz body = %q, want draining", body)
	}
	if _, err := e2e.Get(p.app); err != nil {
		t.Errorf("request while draining: %v", err)
	}
	if c := <-drained; c != 0 {
		t.Errorf("--drain exit code = %d, want 0", c)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("--drain returned after %s, before the 1s NARWHAL_DRAIN_DELAY", el)
	}
	if c, _, _ := p.Client(-1, "--healthcheck"); c != 1 {
		t.Errorf("--healthcheck while draining = %d, want 1", c)
	}

	// During a graceful stop (a slow request keeps the worker busy) /readyz says stopping.
	resp, err := http.Get(p.app + "/slow?ms=1500")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p.Signal(syscall.SIGTERM)
	p.events(t, "stopping", 1)
	code, body = get(p.metrics + "/readyz?verbose")
	if code != 503 || !strings.Contains(body, "[-]not-stopping") {
		t.Errorf("/readyz?verbose during the stop = %d %q", code, body)
	}
	io.Copy(io.Discard, resp.Body)
	if c := p.Wait(timeout); c != 0 {
		t.Errorf("exit code = %d", c)
	}
}

// TestControlSocket: --status from inside the namespace describes this narwhal; a client with
// another uid is refused; two narwhals in two PID namespaces sharing the network namespace
// (a pod) each answer only for themselves.
func TestControlSocket(t *testing.T) {
	e2e.Require(t)
	a := startPool(t, []string{"NARWHAL_WORKERS=2"}, e2e.Example(t, "go")...)
	b := startPool(t, []string{"NARWHAL_WORKERS=3"}, e2e.Example(t, "go")...)
	a.events(t, "ready", 2)
	b.events(t, "ready", 3)
	for _, tc := range []struct {
		p       pool
		workers int
	}{{a, 2}, {b, 3}} {
		code, out, errs := tc.p.Client(-1, "--status")
		if code != 0 {
			t.Fatalf("--status = %d: %s", code, errs)
		}
		var st struct {
			Mode       string
			Generation int
			Ready      bool
			Desired    int
			Workers    []struct {
				Slot, PID, Generation int
				State                 string
				UptimeSeconds         float64 `json:"uptime_seconds"`
				MemoryBytes           int64   `json:"memory_bytes"`
			}
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("--status printed %q: %v", out, err)
		}
		if st.Mode != "pool" || !st.Ready || st.Desired != tc.workers || len(st.Workers) != tc.workers {
			t.Errorf("--status = %+v, want a ready pool of %d", st, tc.workers)
		}
		for _, w := range st.Workers {
			if w.State != "ready" || w.MemoryBytes <= 0 || w.UptimeSeconds <= 0 || w.Generation != 1 {
				t.Errorf("worker %+v", w)
			}
		}
	}
	if code, _, errs := a.Client(65534, "--status"); code != 1 || !strings.Contains(errs, "refused") {
		t.Errorf("--status as uid 65534 = %d %q, want 1 and refused", code, errs)
	}
	a.events(t, "control_refused", 1)

	// Draining a leaves b ready.
	if code, _, _ := a.Client(-1, "--drain"); code != 0 {
		t.Fatalf("--drain of a = %d", code)
	}
	if c, _ := get(a.metrics + "/readyz"); c != 503 {
		t.Errorf("a /readyz after its drain = %d", c)
	}
	if c, _ := get(b.metrics + "/readyz"); c != 200 {
		t.Errorf("b /readyz after a's drain = %d, want 200", c)
	}
	// Where no narwhal listens, the client says so and exits 1. (Outside the namespaces another
	// narwhal on the host could answer, so the test names a socket nobody serves.)
	nobody := e2e.Start(t, e2e.Options{NoNS: true, Env: []string{
		fmt.Sprintf("NARWHAL_CONTROL_SOCKET=@narwhal-test-nobody-%d", os.Getpid())}}, "--status")
	if code := nobody.Wait(timeout); code != 1 || !strings.Contains(nobody.Stderr(), "no narwhal answers") {
		t.Errorf("--status with nothing listening = %d %q, want 1", code, nobody.Stderr())
	}
}

// TestWatchdog: a worker that stops sending WATCHDOG=1 gets SIGABRT within the timeout (and
// SIGKILL 2s later if need be) and is replaced.
func TestWatchdog(t *testing.T) {
	e2e.Require(t)
	p := startPool(t, []string{"NARWHAL_WORKERS=1", "NARWHAL_WORKER_TIMEOUT=1s", "HANG_AFTER=1500ms"}, e2e.Example(t, "go")...)
	p.events(t, "ready", 1)
	ready := time.Now()
	p.events(t, "watchdog", 1)
	if el := time.Since(ready); el < 1500*time.Millisecond || el > 1500*time.Millisecond+time.Second+2*time.Second+time.Second {
		t.Errorf("watchdog fired %s after ready; the pings stopped at 1.5s, timeout 1s", el)
	}
	p.events(t, "ready", 2)
	if !strings.Contains(p.Stderr(), `"reason":"watchdog"`) {
		t.Error("no exit with reason watchdog")
	}
}

// TestReplacementsUnderLoad: WATCHDOG=trigger and NARWHAL_MAX_MEMORY replace a worker,
// replacement ready first, without failing a request.
func TestReplacementsUnderLoad(t *testing.T) {
	e2e.Require(t)
	t.Run("trigger", func(t *testing.T) {
		p := startPool(t, []string{"NARWHAL_WORKERS=2", "TRIGGER_AFTER=500ms", "BOOT_DELAY=200ms"}, e2e.Example(t, "go")...)
		p.events(t, "ready", 2)
		load := loadgen.Start(p.app, 4, 2)
		p.events(t, "replace", 4)
		p.events(t, "ready", 6)
		load.Stop()
		if f := load.Failed.Load(); f != 0 {
			t.Errorf("%d of %d requests failed:\n%s", f, load.Sent.Load(), load.Errors())
		}
		t.Logf("WATCHDOG=trigger replacements: %d requests, %d failed", load.Sent.Load(), load.Failed.Load())
	})
	t.Run("memory", func(t *testing.T) {
		p := startPool(t, []string{"NARWHAL_WORKERS=2", "NARWHAL_MAX_MEMORY=64Mi"}, e2e.Example(t, "go")...)
		p.events(t, "ready", 2)
		load := loadgen.Start(p.app, 4, 2)
		if code, body := get(p.app + "/grow?mb=80"); code != 200 {
			t.Fatalf("/grow: %d %s", code, body)
		}
		p.events(t, "memory", 1)
		p.events(t, "ready", 3)
		if !e2e.Eventually(timeout, func() bool { return strings.Contains(p.Stderr(), `"reason":"memory"`) }) {
			t.Fatal("the grown worker never exited with reason memory")
		}
		load.Stop()
		if f := load.Failed.Load(); f != 0 {
			t.Errorf("%d of %d requests failed:\n%s", f, load.Sent.Load(), load.Errors())
		}
		t.Logf("memory replacement: %d requests, %d failed", load.Sent.Load(), load.Failed.Load())
	})
}

// TestScrapeMemoryFlat: scrapes leak neither goroutines nor memory. A leak grows resident
// memory in every batch of 1,000 scrapes; the runtime's one-off steps (a new thread under
// load, the heap's next size) grow it in one batch only, so only growth in both batches fails.
func TestScrapeMemoryFlat(t *testing.T) {
	e2e.Require(t)
	mport := e2e.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	p := e2e.Start(t, e2e.Options{Bin: e2e.PlainBinary(t), Env: []string{
		"NARWHAL_WORKERS=2", "NARWHAL_LISTEN=127.0.0.1:" + strconv.Itoa(e2e.FreePort(t)),
		"NARWHAL_METRICS_ADDR=127.0.0.1:" + strconv.Itoa(mport),
	}}, e2e.Example(t, "go")...)
	if !e2e.Eventually(timeout, func() bool { return e2e.Count(p.Stderr(), `"event":"ready"`) >= 2 }) {
		t.Fatal("not ready")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	goroutines := func() float64 {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return n
			}
		}
		t.Fatal("no go_goroutines in /metrics")
		return 0
	}
	scrapeN := func(n int) {
		for i := 0; i < n; i++ {
			resp, err := client.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	scrapeN(200) // warm up: pools, buffers and the heap reach their working size
	before, r0 := goroutines(), rss(t, p.PID)
	scrapeN(1000)
	r1 := rss(t, p.PID)
	scrapeN(1000)
	r2 := rss(t, p.PID)
	if after := goroutines(); after > before+10 { // a few come and go with the pool's own work
		t.Errorf("goroutines went from %v to %v over 2,000 scrapes", before, after)
	}
	if min(r1-r0, r2-r1) > 1<<20 {
		t.Errorf("resident memory grew in both batches of 1,000 scrapes: %d, %d, %d KiB", r0>>10, r1>>10, r2>>10)
	}
	t.Logf("narwhal resident memory: %d KiB after warm-up, %d and %d KiB after each 1,000 more scrapes", r0>>10, r1>>10, r2>>10)
}

func rss(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestContainerMemoryOfARealCgroup: narwhal in a memory cgroup of its own, made for this test
// with a 300 MiB limit, reports that limit and a working set from it.
func TestContainerMemoryOfARealCgroup(t *testing.T) {
	e2e.Require(t)
	cg := memoryCgroup(t, 300<<20)
	p := startPoolIn(t, cg, []string{"NARWHAL_WORKERS=1"}, e2e.Example(t, "go")...)
	p.events(t, "ready", 1)
	var limit, used float64
	ok := e2e.Eventually(timeout, func() bool {
		mfs := scrape(t, p.metrics)
		if mfs["narwhal_memory_limit_bytes"] == nil || mfs["narwhal_memory_working_set_bytes"] == nil {
			return false
		}
		limit = mfs["narwhal_memory_limit_bytes"].GetMetric()[0].GetGauge().GetValue()
		used = mfs["narwhal_memory_working_set_bytes"].GetMetric()[0].GetGauge().GetValue()
		return limit == 300<<20 && used > 0
	})
	if !ok {
		t.Errorf("narwhal_memory_limit_bytes %v, working set %v; want 300 MiB and more than 0", limit, used)
	}
}

// memoryCgroup makes a memory cgroup with the given limit for the test and removes it after,
// once narwhal and its workers (killed by the test's cleanup) have left it.
func memoryCgroup(t *testing.T, limit int64) string {
	t.Helper()
	var dir, limitFile string
	switch {
	case fileExists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
		dir, limitFile = filepath.Join("/sys/fs/cgroup/memory", fmt.Sprintf("narwhal-test-%d", os.Getpid())), "memory.limit_in_bytes"
	case fileExists("/sys/fs/cgroup/cgroup.controllers"):
		dir, limitFile = filepath.Join("/sys/fs/cgroup", fmt.Sprintf("narwhal-test-%d", os.Getpid())), "memory.max"
	default:
		if os.Getenv("NARWHAL_E2E") == "required" {
			t.Fatal("no memory cgroup controller to test with, and NARWHAL_E2E=required")
		}
		t.Skip("no memory cgroup controller")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("make cgroup: %v", err)
	}
	t.Cleanup(func() {
		if !e2e.Eventually(10*time.Second, func() bool { return os.Remove(dir) == nil }) {
			t.Errorf("cgroup %s could not be removed", dir)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatalf("set %s: %v", limitFile, err)
	}
	return dir
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestOOMKillNamed: a worker that the kernel's OOM killer ends (here one that fills 400 MiB in
// a 100 MiB cgroup) is logged and counted with reason oom, not crash, and is restarted.
func TestOOMKillNamed(t *testing.T) {
	e2e.Require(t)
	needPython(t)
	cg := memoryCgroup(t, 100<<20)
	mark := filepath.Join(t.TempDir(), "filled")
	worker := fmt.Sprintf(`if [ ! -e %[1]s ]; then touch %[1]s; exec python3 -c 'x = b"x" * (400 << 20)'; fi
exec %[2]s`, mark, e2e.Example(t, "go")[0])
	p := startPoolIn(t, cg, []string{"NARWHAL_WORKERS=1"}, "sh", "-c", worker)
	p.events(t, "ready", 1) // the restart
	if !strings.Contains(p.Stderr(), `"reason":"oom"`) {
		t.Fatalf("no exit with reason oom:\n%s", p.Stderr())
	}
	if !strings.Contains(p.Stderr(), fmt.Sprintf(`"memory_limit_bytes":%d`, 100<<20)) {
		t.Errorf("the OOM kill's line does not give the container's limit:\n%s", p.Stderr())
	}
	exits := map[string]float64{}
	for _, m := range scrape(t, p.metrics)["narwhal_worker_exits_total"].GetMetric() {
		exits[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if exits["oom"] != 1 || exits["crash"] != 0 {
		t.Errorf("narwhal_worker_exits_total %v, want oom 1 and crash 0", exits)
	}
}

func needPython(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("NARWHAL_E2E") == "required" {
			t.Fatal("python3 is not installed, and NARWHAL_E2E=required")
		}
		t.Skip("python3 is not installed")
	}
}

// TestMemoryBudgetActsBeforeTheOOMKiller: with a 200 MiB limit and NARWHAL_MEMORY_BUDGET=50%, a
// worker that grows to 120 MiB is replaced (stopped first: there is no room for a second one
// beside it) before the kernel's OOM killer would act, and its slot serves again.
func TestMemoryBudgetActsBeforeTheOOMKiller(t *testing.T) {
	e2e.Require(t)
	needPython(t)
	cg := memoryCgroup(t, 200<<20)
	mark := filepath.Join(t.TempDir(), "grown")
	grow := `import os, time
os.write(int(os.environ["NARWHAL_NOTIFY_FD"]), b"READY=1\n")
if not os.path.exists(os.environ["MARK"]):
    open(os.environ["MARK"], "w").close()
    x = b"x" * (120 << 20)
time.sleep(1000)
`
	p := startPoolIn(t, cg, []string{"NARWHAL_WORKERS=1", "NARWHAL_READY=notify", "NARWHAL_MEMORY_BUDGET=50%", "MARK=" + mark},
		"python3", "-c", grow)
	p.events(t, "memory_budget", 1)
	p.events(t, "ready", 2)
	log := p.Stderr()
	if !strings.Contains(log, `"action":"stop first"`) || !strings.Contains(log, `"reason":"memory"`) {
		t.Errorf("want the grown worker stopped first for memory:\n%s", log)
	}
	if strings.Contains(log, `"reason":"oom"`) {
		t.Error("the OOM killer acted before the budget")
	}
}

package deploy

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/loadgen"
	corev1 "k8s.io/api/core/v1"
)

// The kubelet tests run pods rendered from the chart on a real standalone kubelet (node_test.go):
// `make test-kubernetes`. They check what only a kubelet can: that the pod is valid, that the
// probes and the preStop hook reach narwhal in a FROM scratch, read-only, non-root container,
// and that the drain delay, SIGTERM and the grace period add up.

const podTimeout = 90 * time.Second

// staticPod renders the chart with overrides (over the image built here) and turns its
// Deployment's pod template into a static pod called name.
func staticPod(t *testing.T, name string, overrides map[string]any) *corev1.Pod {
	t.Helper()
	tpl := render(t, chartValues(overrides)).deployment.Spec.Template
	pod := &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
	pod.APIVersion, pod.Kind = "v1", "Pod"
	pod.Name, pod.Namespace = name, "default"
	return pod
}

// running is a pod the kubelet made Ready.
type running struct {
	name, ip, id string // the manifest's name, the pod IP, the app container's ID
	readyAfter   time.Duration
	log          *os.File // the app container's log, opened while it exists
}

// start applies pod and waits until the kubelet reports it Ready.
func (n *node) start(t *testing.T, pod *corev1.Pod) *running {
	t.Helper()
	start := time.Now()
	n.apply(t, pod)
	t.Cleanup(func() { n.remove(t, pod.Name) })
	var p corev1.Pod
	if !e2e.Eventually(podTimeout, func() bool { var ok bool; p, ok = n.pod(pod.Name); return ok && ready(p) }) {
		t.Fatalf("pod %s not Ready within %s; status: %+v\nkubelet: %s", pod.Name, podTimeout, p.Status,
			tail(filepath.Join(n.dir, "kubelet.log"), 40))
	}
	r := &running{name: pod.Name, ip: p.Status.PodIP, id: containerID(p), readyAfter: time.Since(start)}
	if r.ip == "" || r.id == "" {
		t.Fatalf("pod %s is Ready without an IP or container: %+v", pod.Name, p.Status)
	}
	logs, _ := filepath.Glob(filepath.Join(n.dir, "logs", "default_"+p.Name+"_*", "app", "*.log"))
	if len(logs) != 1 {
		t.Fatalf("want one log file for the app container, found %v", logs)
	}
	f, err := os.Open(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r.log = f
	return r
}

func (r *running) url(port int, path string) string {
	return fmt.Sprintf("http://%s:%d%s", r.ip, port, path)
}

// metric is the value of one sample on narwhal's /metrics, -1 if absent.
func (r *running) metric(name string) float64 {
	body, err := e2e.Get(r.url(9090, "/metrics"))
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// status is the HTTP status of a GET, 0 when it fails.
func status(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// logged is narwhal's log line with the given event (and containing also), with the time the
// runtime stamped on it, read from the container's log as the kubelet keeps it.
type logLine struct {
	at   time.Time
	line string
}

func (r *running) events(event string, also string) []logLine {
	r.log.Seek(0, 0)
	var out []logLine
	sc := bufio.NewScanner(r.log)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		// CRI log format: RFC 3339 time, stream, P(artial) or F(ull), the line.
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 4 || !strings.Contains(f[3], `"event":"`+event+`"`) || !strings.Contains(f[3], also) {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, f[0]); err == nil {
			out = append(out, logLine{at, f[3]})
		}
	}
	return out
}

func TestKubelet(t *testing.T) {
	requireNode(t)
	n := startNode(t)
	t.Run("DefaultPod", func(t *testing.T) { testDefaultPod(t, n) })
	t.Run("ManualDrain", func(t *testing.T) { testManualDrain(t, n) })
	t.Run("CPUs", func(t *testing.T) { testCPUs(t, n) })
	t.Run("Balanced", func(t *testing.T) { testBalanced(t, n) })
}

// testBalanced: NARWHAL_SOCKET_MODE=balanced in the chart's locked-down container (non-root, no
// capabilities) steers with what the kernel allows there (classic BPF, at random, unless the
// host allows unprivileged eBPF), and serves from every worker.
func testBalanced(t *testing.T, n *node) {
	r := n.start(t, staticPod(t, "narwhal-balanced", map[string]any{"narwhal": map[string]any{"workers": 2, "socketMode": "balanced"}}))
	line := r.events("config", `"steering":"`)
	if len(line) != 1 {
		t.Fatalf("balanced mode in the pod logged %v; want one line saying how it steers", line)
	}
	if !e2e.Eventually(podTimeout, func() bool { return r.metric(`narwhal_workers{state="ready"}`) == 2 }) {
		t.Fatal("the pod's two workers never were ready")
	}
	pids := map[string]int{}
	pid := regexp.MustCompile(`"pid":(\d+)`)
	for range 100 {
		body, err := e2e.Get(r.url(8080, "/"))
		if err != nil {
			t.Fatal(err)
		}
		pids[pid.FindString(body)]++
	}
	if len(pids) != 2 {
		t.Errorf("100 requests reached %v, want both workers", pids)
	}
	t.Logf("balanced in the pod: %s; 100 requests: %v", regexp.MustCompile(`"steering":"[a-z-]+"`).FindString(line[0].line), pids)
}

// testDefaultPod: the chart's defaults turn Ready through the probes; the workers answer on
// the pod IP; a SIGHUP rollout under load fails nothing; deleting the pod runs the preStop
// drain (503 at once, requests served through the delay), then SIGTERM, exit 0 in time.
func testDefaultPod(t *testing.T, n *node) {
	pod := staticPod(t, "narwhal", map[string]any{"narwhal": map[string]any{"workers": 2}})
	exits := n.exits(t)
	r := n.start(t, pod)
	t.Logf("Ready %s after the manifest appeared", r.readyAfter.Round(time.Millisecond))

	pids := map[string]bool{}
	for i := 0; i < 1000 && len(pids) < 2; i++ {
		body, err := e2e.Get(r.url(8080, "/"))
		if err != nil {
			t.Fatalf("GET on the pod IP: %v", err)
		}
		if m := regexp.MustCompile(`"pid":(\d+)`).FindStringSubmatch(body); m != nil {
			pids[m[1]] = true
		}
	}
	if len(pids) != 2 {
		t.Errorf("answers on the pod IP came from workers %v, want 2", pids)
	}

	// A rolling restart by SIGHUP to narwhal, PID 1 of the container, under load.
	load := loadgen.Start(r.url(8080, "/"), 4, 2)
	if out, err := n.ctr("tasks", "kill", "--signal", "SIGHUP", r.id); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if !e2e.Eventually(podTimeout, func() bool { return len(r.events("rollout_completed", "")) == 1 }) {
		t.Fatal("no rollout completed after SIGHUP")
	}
	load.Stop()
	if f := load.Failed.Load(); f != 0 || load.Sent.Load() == 0 {
		t.Errorf("rollout in the pod under load: %d of %d requests failed:\n%s", f, load.Sent.Load(), load.Errors())
	}
	t.Logf("SIGHUP rollout in the pod: %d requests, %d failed", load.Sent.Load(), load.Failed.Load())

	// Delete the pod: the kubelet runs the preStop hook (narwhal --drain), then SIGTERM.
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	drainDelay := 5 * time.Second // the chart's drainDelaySeconds
	load = loadgen.Start(r.url(8080, "/"), 4, 2)
	deleted := time.Now()
	n.remove(t, pod.Name)
	var unready time.Time
	if !e2e.Eventually(podTimeout, func() bool { return status(r.url(9090, "/readyz")) == http.StatusServiceUnavailable }) {
		t.Fatal("/readyz never answered 503 after the pod was deleted")
	}
	unready = time.Now()
	// The drain delay is the time the endpoints controller and every proxy need to stop sending
	// here: every request until its end must be served.
	for time.Since(unready) < drainDelay-500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	load.Stop()
	if f := load.Failed.Load(); f != 0 || load.Sent.Load() == 0 {
		t.Errorf("during the drain delay %d of %d requests failed:\n%s", f, load.Sent.Load(), load.Errors())
	}
	var exit taskExit
	select {
	case exit = <-waitExit(exits, r.id):
	case <-time.After(grace + 10*time.Second):
		t.Fatalf("the container did not exit within the grace period (%s) and 10s", grace)
	}
	if exit.Status != 0 {
		t.Errorf("the container exited %d, want 0", exit.Status)
	}
	drain, stop := r.events("drain", ""), r.events("stopping", `"signal":"SIGTERM"`)
	if len(drain) == 0 || len(stop) != 1 {
		t.Fatalf("narwhal logged %d drain and %d SIGTERM stopping lines, want ≥1 and 1", len(drain), len(stop))
	}
	if gap := stop[0].at.Sub(drain[0].at); gap < drainDelay-100*time.Millisecond {
		t.Errorf("SIGTERM came %s after the drain began, before the drain delay (%s) ended", gap, drainDelay)
	}
	took := exit.At.Sub(deleted)
	if took > grace {
		t.Errorf("the container exited %s after the pod was deleted, past the grace period %s", took, grace)
	}
	exited := 0
	for _, l := range r.events("exit", `"reason":"stop"`) {
		if !l.at.Before(stop[0].at) {
			exited++
		}
	}
	if exited != 2 {
		t.Errorf("narwhal logged %d workers stopping after SIGTERM, want 2", exited)
	}
	hook, ok := n.logged(`"Running preStop hook" pod="default/` + pod.Name + `-` + nodeName + `"`)
	if !ok {
		t.Fatal("the kubelet's log does not show it running the preStop hook")
	}
	t.Logf("pod deleted: the kubelet ran preStop after %s; /readyz 503 %s after; %d requests through "+
		"the drain delay, %d failed; SIGTERM %s after the drain began; exit %d %s after the deletion "+
		"(grace period %s, drain delay %s)",
		hook.Sub(deleted).Round(time.Millisecond), unready.Sub(hook).Round(time.Millisecond),
		load.Sent.Load(), load.Failed.Load(), stop[0].at.Sub(drain[0].at).Round(time.Millisecond),
		exit.Status, took.Round(time.Millisecond), grace, drainDelay)
}

// waitExit delivers the exit of container id.
func waitExit(exits <-chan taskExit, id string) <-chan taskExit {
	ch := make(chan taskExit, 1)
	go func() {
		for e := range exits {
			if e.ID == id {
				ch <- e
				return
			}
		}
	}()
	return ch
}

// testManualDrain: `narwhal --drain` run by hand in the container makes the kubelet mark the pod
// NotReady while the liveness probe keeps passing: the container is not restarted.
func testManualDrain(t *testing.T, n *node) {
	pod := staticPod(t, "narwhal-drain", map[string]any{
		"narwhal":           map[string]any{"workers": 1},
		"drainDelaySeconds": 1,
		"probes": map[string]any{
			"liveness":  map[string]any{"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2},
			"readiness": map[string]any{"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1},
		},
	})
	r := n.start(t, pod)
	if out, err := n.ctr("tasks", "exec", "--exec-id", "drain", r.id, "/narwhal", "--drain"); err != nil {
		t.Fatalf("narwhal --drain in the container: %v\n%s", err, out)
	}
	var p corev1.Pod
	if !e2e.Eventually(podTimeout, func() bool { p, _ = n.pod(pod.Name); return !ready(p) }) {
		t.Fatal("the kubelet never marked the drained pod NotReady")
	}
	notReady := time.Now()
	// Three liveness periods past the failure threshold: a failing /livez would have had the
	// container restarted by now.
	for time.Since(notReady) < 4*time.Second {
		if code := status(r.url(9090, "/livez")); code != http.StatusOK {
			t.Fatalf("/livez = %d while drained, want 200", code)
		}
		if code := status(r.url(8080, "/")); code != http.StatusOK {
			t.Fatalf("a worker answered %d while narwhal is drained, want 200 until SIGTERM", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p, _ = n.pod(pod.Name)
	if ready(p) || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].RestartCount != 0 ||
		p.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("after a manual drain the pod should stay NotReady and running, unrestarted: %+v", p.Status)
	}
	// At --v=3 the kubelet logs every probe's result.
	kl := n.log()
	probes := func(result, kind string) int {
		return len(regexp.MustCompile(`"Probe `+result+`" probeType="`+kind+`" pod="default/`+p.Name+`"`).FindAllString(kl, -1))
	}
	if probes("failed", "Readiness") == 0 || probes("failed", "Liveness") != 0 || probes("succeeded", "Liveness") < 4 {
		t.Errorf("the kubelet's probes of the drained pod: readiness failed %d times (want >0), liveness failed %d "+
			"(want 0) and succeeded %d (want ≥4)", probes("failed", "Readiness"), probes("failed", "Liveness"),
			probes("succeeded", "Liveness"))
	}
}

// testCPUs: NARWHAL_WORKERS=auto takes a CPU limit's quota (over the request the chart passes
// as NARWHAL_CPUS), and with a request and no limit the request decides.
func testCPUs(t *testing.T, n *node) {
	cases := []struct {
		name      string
		resources map[string]any
		reason    string
	}{
		{"narwhal-limit", map[string]any{"limits": map[string]any{"cpu": "2"}, "requests": map[string]any{"cpu": "100m"}}, "the container's CPU quota"},
		{"narwhal-request", map[string]any{"requests": map[string]any{"cpu": "1500m"}}, "NARWHAL_CPUS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := n.start(t, staticPod(t, c.name, map[string]any{"resources": c.resources}))
			if got := r.metric("narwhal_workers_desired"); got != 2 {
				t.Errorf("narwhal_workers_desired = %v, want 2", got)
			}
			if l := r.events("config", `"reason":"`+c.reason+`"`); len(l) != 1 {
				t.Errorf("narwhal did not log workers from %s; its config lines: %v", c.reason, r.events("config", ""))
			}
			n.remove(t, c.name)
			if !e2e.Eventually(podTimeout, func() bool { _, ok := n.pod(c.name); return !ok }) {
				t.Fatalf("pod %s still on the node after its manifest was removed", c.name)
			}
		})
	}
}

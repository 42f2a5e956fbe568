// Command bench-driver runs the benchmarks that need a clock of their own, on 127.0.0.1 and
// bounded in time, and prints Markdown tables:
//
//   - peers: the same app under narwhal (with each server people run) and under the process
//     managers people would pick instead, through four deploys: a healthy one, a slow-booting
//     one, one whose new code dies at boot and one whose new code never gets ready
//     (bench/peers.sh, `make bench-peers`);
//   - scale: a load that steps up and down against a pool sized by narwhal from its accept
//     queue, beside fixed pools of its MIN and MAX (bench/scale.sh);
//   - output: workers writing lines as fast as they can, through narwhal
//     (NARWHAL_WORKER_OUTPUT=json, text) or straight to its stdout (inherit) (bench/output.sh);
//   - balance: how evenly four workers share new and keep-alive connections under each
//     NARWHAL_SOCKET_MODE and under node's cluster module, and what rollouts and a SIGKILL under
//     load cost (bench/balance.sh).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/internal/loadgen"
	"github.com/narwhal-init/narwhal/internal/proc"
)

const readyTimeout = 10 * time.Second // narwhal's NARWHAL_READY_TIMEOUT in this benchmark

// restartTimeout bounds one restart: how long a deploy may take before it counts as not done.
var restartTimeout = 30 * time.Second

type scenario struct {
	key, title string
	boot       time.Duration
	restarts   int
	bad        string // "", or the release deployed first: "broken" (dies at boot), "hung" (never ready)
}

var scenarios = []scenario{
	{"a", "a. Healthy deploys: 300 ms boot, 10 restarts", 300 * time.Millisecond, 10, ""},
	{"b", "b. Slow boot: 5 s, 1 restart", 5 * time.Second, 1, ""},
	{"c", "c. Broken deploy: the new code raises at boot, then a good deploy", 300 * time.Millisecond, 1, "broken"},
	{"d", "d. Hung deploy: the new code never gets ready, then a good deploy", 300 * time.Millisecond, 1, "hung"},
}

func main() {
	root := flag.String("root", ".", "the project's root (bin/narwhal and examples/ under it)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: bench-driver [-root DIR] peers [-scenarios abcd] [-rows TEXT] | scale | output [-runs N] | balance [-runs N] [-requests N]")
	}
	flag.Parse()
	log.SetFlags(log.Ltime)
	abs, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	switch flag.Arg(0) {
	case "peers":
		peers(abs, flag.Args()[1:])
	case "scale":
		scale(abs)
	case "output":
		output(abs, flag.Args()[1:])
	case "balance":
		balance(abs, flag.Args()[1:])
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func peers(root string, args []string) {
	fs := flag.NewFlagSet("peers", flag.ExitOnError)
	only := fs.String("scenarios", "abcd", "which scenarios to run")
	match := fs.String("rows", "", "run only the rows whose name and restart contain one of these, |-separated")
	fs.Parse(args)
	for _, sc := range scenarios {
		if !strings.Contains(*only, sc.key) {
			continue
		}
		fmt.Printf("### %s\n\n", sc.title)
		fmt.Println("| manager | restart | restarts verified | sent | failed | p50 ms | p99 ms steady | p99 ms during | max ms during | slowest ms per deploy | rollout s | req/s |")
		fmt.Println("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, m := range managers {
			if *match != "" && !slices.ContainsFunc(strings.Split(*match, "|"), func(s string) bool {
				return strings.Contains(m.name+" "+m.how, s)
			}) {
				continue
			}
			res, err := run(m, sc, root)
			if err != nil {
				log.Printf("%s (%s): %v", m.name, m.how, err)
			}
			fmt.Println(res)
		}
		fmt.Println()
	}
}

// result is one line of a table.
type result struct {
	m                                 *manager
	verified                          string
	sent, failed                      int
	p50, p99Steady, p99During, maxDur float64
	worst, rollout                    string
	rps                               float64
}

func (r result) String() string {
	return fmt.Sprintf("| %s | %s | %s | %d | %d | %.1f | %.1f | %.1f | %.0f | %s | %s | %.0f |",
		r.m.name, r.m.how, r.verified, r.sent, r.failed, r.p50, r.p99Steady, r.p99During, r.maxDur, r.worst, r.rollout, r.rps)
}

func run(m *manager, sc scenario, root string) (res result, err error) {
	res = result{m: m, verified: "not run", worst: "-", rollout: "-"}
	tmp, err := os.MkdirTemp("", "narwhal-peers-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	r := &row{manager: m, rel: filepath.Join(tmp, "release"), tmp: tmp, root: root, boot: sc.boot}
	if err := deploy(r, "good"); err != nil {
		return res, err
	}
	r.port, err = freePort()
	if err != nil {
		return res, err
	}
	r.cmd = m.start(r)
	out, _ := os.Create(filepath.Join(os.TempDir(), "narwhal-peers-"+strings.NewReplacer(" ", "-", "+", "", ",", "", "(", "", ")", "").Replace(m.name+"-"+m.how)+"-"+sc.key+".log"))
	defer out.Close()
	r.cmd.Stdout, r.cmd.Stderr = out, out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return res, err
	}
	r.master = r.cmd.Process.Pid
	defer stop(r)
	url := "http://" + r.addr() + "/"
	if !waitServing(url, sc.boot+30*time.Second) {
		res.verified = "never served"
		return res, errors.New("not serving")
	}
	log.Printf("%s (%s), scenario %s: serving", m.name, m.how, sc.key)

	r.load = loadgen.Start(url, 4, 4)
	began := time.Now()
	time.Sleep(3 * time.Second) // steady state
	first := time.Now()
	var took []time.Duration
	var windows [][2]time.Time // each deploy that was done, from its signal to its end
	done := func(d time.Duration, at time.Time) {
		took = append(took, d)
		windows = append(windows, [2]time.Time{at, at.Add(d)})
	}
	verified := 0
	switch sc.bad {
	case "":
		restartTimeout = 30*time.Second + 4*sc.boot
		for range sc.restarts {
			if at, d, ok := restart(r); ok {
				verified++
				done(d, at)
			}
			time.Sleep(2 * time.Second) // between deploys, as a deploy pipeline would leave
		}
		res.verified = fmt.Sprintf("%d/%d", verified, sc.restarts)
	default:
		restartTimeout = readyTimeout + 5*time.Second
		if err := deploy(r, sc.bad); err != nil {
			return res, err
		}
		old := r.load.Since(time.Now().Add(-time.Second))
		_, _, replaced := restart(r)
		kept, snap := 0, proc.Host.Snapshot()
		for pid := range old {
			if alive(snap, pid) {
				kept++
			}
		}
		if err := deploy(r, "good"); err != nil {
			return res, err
		}
		restartTimeout = 30 * time.Second
		at, d, fixed := restart(r)
		if fixed {
			done(d, at)
		}
		res.verified = fmt.Sprintf("bad release: %s; fix: %s",
			map[bool]string{true: "replaced the old workers", false: fmt.Sprintf("%d of %d old workers kept", kept, len(old))}[replaced],
			map[bool]string{true: "deployed", false: "not deployed"}[fixed])
	}
	last := time.Now()
	time.Sleep(time.Second)
	reqs := r.load.Stop()
	elapsed := time.Since(began)

	steady := loadgen.Between(reqs, began.Add(time.Second), first)
	during := loadgen.Between(reqs, first, last)
	res.sent, res.failed = len(reqs), loadgen.Failed(reqs)
	res.p50 = loadgen.Percentile(reqs, 50)
	res.p99Steady, res.p99During, res.maxDur = loadgen.Percentile(steady, 99), loadgen.Percentile(during, 99), loadgen.Percentile(during, 100)
	res.rps = float64(len(reqs)) / elapsed.Seconds()
	if len(took) > 0 {
		slices.Sort(took)
		res.rollout = fmt.Sprintf("%.1f", took[len(took)/2].Seconds())
		// The slowest request of each deploy, the median over deploys: unlike the max, it
		// does not grow with the number of requests a long rollout takes.
		var worst []float64
		for _, w := range windows {
			worst = append(worst, loadgen.Percentile(loadgen.Between(reqs, w[0], w[1]), 100))
		}
		slices.Sort(worst)
		res.worst = fmt.Sprintf("%.0f", worst[len(worst)/2])
	}
	return res, nil
}

// restart triggers one deploy and waits until it is done: every worker that answered in the
// second before has exited, and a new one answers. It returns when it began and how long it
// took, or false when it was not done within restartTimeout.
func restart(r *row) (time.Time, time.Duration, bool) {
	old := r.load.Since(time.Now().Add(-time.Second))
	start := time.Now()
	deadline := start.Add(restartTimeout)
	go func() {
		if err := r.restart(r); err != nil {
			log.Printf("%s (%s): restart: %v", r.name, r.how, err)
		}
	}()
	for time.Now().Before(deadline) {
		gone, snap := true, proc.Host.Snapshot()
		for pid := range old {
			gone = gone && !alive(snap, pid)
		}
		fresh := false
		for pid := range r.load.Since(start) {
			fresh = fresh || !old[pid]
		}
		if gone && fresh { // with no old worker answering (an outage), any answer is new
			return start, time.Since(start), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return start, 0, false
}

// stop ends the manager and everything it started: its process group gets SIGTERM, then
// SIGKILL after 15 s.
func stop(r *row) {
	if r.load != nil {
		r.load.Stop()
	}
	pgid := r.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	syscall.Kill(r.master, syscall.SIGTERM) // a re-executed master

	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-done
}

func waitServing(url string, limit time.Duration) bool {
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := c.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
	}
	return false
}

// deploy writes a release of the row's app into its release directory, each file replaced
// whole (written beside, then renamed), as a deploy does: good (the examples' app), broken
// (raises at boot) or hung (never gets ready).
func deploy(r *row, kind string) error {
	if err := os.MkdirAll(r.rel, 0o755); err != nil {
		return err
	}
	ex := func(p string) string { return filepath.Join(r.root, "examples", p) }
	files := map[string]string{} // name in the release → content, or "@path" to copy
	switch r.app {
	case "python":
		files["app.py"] = map[string]string{"good": "@" + ex("python/app.py"),
			"broken": "raise RuntimeError('this release is broken at boot')\n",
			"hung":   "import time\ntime.sleep(1e9)\n"}[kind]
		files["uvicorn_serve.py"] = "@" + ex("python/uvicorn_serve.py")
		files["narwhal_fork.py"] = "@" + filepath.Join(r.root, "contrib/python/narwhal_fork.py") // beside the app, as docs/preload.md says
	case "ruby":
		files["config.ru"] = map[string]string{"good": "@" + ex("ruby/config.ru"),
			"broken": "raise 'this release is broken at boot'\n", "hung": "sleep\n"}[kind]
		files["puma.rb"] = "@" + ex("ruby/puma.rb")
		files["narwhal_fork.rb"] = "@" + filepath.Join(r.root, "contrib/ruby/narwhal_fork.rb")
	case "node":
		files["server.js"] = map[string]string{"good": "@" + ex("node/server.js"),
			"broken": "throw new Error('this release is broken at boot');\n",
			"hung":   "setInterval(() => {}, 1 << 30);\n"}[kind]
	case "go":
		files["server"] = map[string]string{"good": "@" + filepath.Join(r.root, "bin/example-go"),
			"broken": "#!/bin/sh\necho 'this release is broken at boot' >&2\nexit 1\n",
			"hung":   "#!/bin/sh\nexec sleep 1000000\n"}[kind]
	}
	for name, content := range files {
		b := []byte(content)
		if path, ok := strings.CutPrefix(content, "@"); ok {
			var err error
			if b, err = os.ReadFile(path); err != nil {
				return err
			}
		}
		next := filepath.Join(r.rel, "."+name+".new")
		if err := os.WriteFile(next, b, 0o755); err != nil {
			return err
		}
		if err := os.Rename(next, filepath.Join(r.rel, name)); err != nil {
			return err
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

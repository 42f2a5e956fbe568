// Package metrics exposes narwhal's state to Prometheus and to orchestrators' probes. Every
// metric is computed at scrape time from the snapshot the supervising loop publishes (worker
// memory and CPU and the accept queues included, from the loop's own reads, at most a second
// old), through one injected registry: nothing here touches the loop's state, reads /proc or a
// socket, and nothing is global.
package metrics

import (
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/internal/pool"
	"github.com/narwhal-init/narwhal/internal/status"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// actedOn are the signals narwhal does something with itself, counted from zero like every
// labelled counter's values (pool.ExitReasons, pool.RolloutResults), so that dashboards and
// alerts see zeros rather than nothing.
var actedOn = signalNames(append(append([]syscall.Signal(nil), status.StopSignals...), status.PoolSignals...))

func signalNames(sigs []syscall.Signal) []string {
	out := make([]string, len(sigs))
	for i, sig := range sigs {
		out[i] = config.SignalName(sig)
	}
	return out
}

// Collector turns the board into metrics.
type Collector struct {
	board   *status.Board
	orphans func() uint64
	version string

	mu             sync.Mutex // held through Collect: the histograms are fed there
	readySeconds   prometheus.Histogram
	rolloutSeconds prometheus.Histogram

	buildInfo, desired, workers, starts, exits, generation, rollouts, orphansTotal, signals,
	ready, draining, queued, backlog, memory, proportional, template, merged, cpu, memoryLimit, workingSet, overflows, refused *prometheus.Desc
}

// New returns the collector; orphans reads the reaper's count.
func New(b *status.Board, orphans func() uint64, version string) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("narwhal_"+name, help, labels, nil)
	}
	return &Collector{
		board: b, orphans: orphans, version: version,
		readySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "narwhal_worker_ready_seconds", Help: "Time from a worker's start to its readiness.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		rolloutSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "narwhal_rollout_duration_seconds", Help: "Duration of completed rolling restarts.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		buildInfo:    d("build_info", "narwhal's version and the Go version it was built with.", "version", "goversion"),
		desired:      d("workers_desired", "Workers the pool keeps running."),
		workers:      d("workers", "Workers by state.", "state"),
		starts:       d("worker_starts_total", "Workers started."),
		exits:        d("worker_exits_total", "Workers that exited, by reason.", "reason"),
		generation:   d("generation", "Newest worker generation (1 at start, +1 per rolling restart)."),
		rollouts:     d("rollouts_total", "Rolling restarts by result.", "result"),
		orphansTotal: d("orphans_reaped_total", "Re-parented processes reaped."),
		signals:      d("signals_received_total", "Signals narwhal received.", "signal"),
		ready:        d("ready", "1 when narwhal reports ready (/readyz answers 200)."),
		draining:     d("draining", "1 once narwhal --drain has run."),
		queued:       d("listener_queued_connections", "Connections waiting in a listener's accept queue now.", "listener"),
		backlog:      d("listener_backlog", "A listener's accept queue size.", "listener"),
		memory:       d("worker_resident_memory_bytes", "Resident memory of a slot's worker and its descendants.", "slot"),
		proportional: d("worker_proportional_memory_bytes",
			"Proportional memory (PSS) of a slot's worker and its descendants: each shared page counted as a share.", "slot"),
		template: d("template_proportional_memory_bytes",
			"Proportional memory (PSS) of the current generation's template (NARWHAL_PRELOAD)."),
		merged: d("worker_merged_memory_bytes",
			"Memory of a slot's worker and its descendants in pages ksmd merged (NARWHAL_MEMORY_MERGE).", "slot"),
		memoryLimit: d("memory_limit_bytes", "The container's memory limit, from its cgroup; 0 when it has none."),
		workingSet:  d("memory_working_set_bytes", "The container's memory use less inactive file cache, what the kubelet evicts by."),
		overflows:   d("listen_overflows_total", "Connections the kernel dropped because an accept queue was full, in narwhal's network namespace."),
		cpu:         d("worker_cpu_seconds_total", "CPU time of every process a slot has run: its workers and their descendants.", "slot"),
		refused:     d("control_refused_total", "Control socket clients refused: neither narwhal's uid nor root."),
	}
}

// Registry returns a fresh registry holding c and the Go and process collectors.
func Registry(c *Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.desired, c.workers, c.starts, c.exits, c.generation,
		c.rollouts, c.orphansTotal, c.signals, c.ready, c.draining, c.queued, c.backlog, c.memory, c.proportional, c.template, c.merged, c.cpu,
		c.memoryLimit, c.workingSet, c.overflows, c.refused} {
		ch <- d
	}
	c.readySeconds.Describe(ch)
	c.rolloutSeconds.Describe(ch)
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.board.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.buildInfo, 1, c.version, runtime.Version())
	gauge(c.desired, float64(s.Desired))
	byState := map[string]int{}
	for _, w := range s.Workers {
		byState[w.State]++
	}
	for _, st := range pool.States {
		gauge(c.workers, float64(byState[st.String()]), st.String())
	}
	counter(c.starts, float64(s.Starts))
	for _, r := range pool.ExitReasons {
		counter(c.exits, float64(s.Exits[r]), r)
	}
	gauge(c.generation, float64(s.Generation))
	for _, r := range pool.RolloutResults {
		counter(c.rollouts, float64(s.Rollouts[r]), r)
	}
	counter(c.orphansTotal, float64(c.orphans()))
	signals := c.board.Signals()
	for _, name := range actedOn {
		counter(c.signals, float64(signals[name]), name)
	}
	for name, n := range signals {
		if !slices.Contains(actedOn, name) {
			counter(c.signals, float64(n), name)
		}
	}
	ok, _ := c.board.Ready()
	gauge(c.ready, boolFloat(ok))
	gauge(c.draining, boolFloat(c.board.Draining()))
	counter(c.refused, float64(c.board.ControlRefused()))

	for _, l := range s.Listeners {
		if !l.QueueKnown {
			continue
		}
		gauge(c.queued, float64(l.Queued), l.Name)
		if l.Backlog > 0 {
			gauge(c.backlog, float64(l.Backlog), l.Name)
		}
	}

	if whole := s.Container; whole.MemoryKnown {
		gauge(c.memoryLimit, float64(whole.Memory.Limit))
		gauge(c.workingSet, float64(whole.Memory.WorkingSet))
	}
	if whole := s.Container; whole.OverflowsKnown {
		counter(c.overflows, float64(whole.ListenOverflows))
	}

	// Per slot: every process in it (a replacement and the worker it replaces both count).
	mem, pss, merged := map[int]int64{}, map[int]int64{}, map[int]int64{}
	for _, w := range s.Workers {
		mem[w.Slot] += w.Resident
		pss[w.Slot] += w.Proportional
		merged[w.Slot] += w.Merged
	}
	for _, slot := range slices.Sorted(maps.Keys(mem)) {
		label := strconv.Itoa(slot)
		gauge(c.memory, float64(mem[slot]), label)
		if s.SharesKnown {
			gauge(c.proportional, float64(pss[slot]), label)
		}
		if s.MemoryMerge {
			gauge(c.merged, float64(merged[slot]), label)
		}
	}
	if n := len(s.Templates); n > 0 && s.SharesKnown {
		gauge(c.template, float64(s.Templates[n-1].Proportional)) // the newest: a rollout's, once it runs
	}
	for _, slot := range slices.Sorted(maps.Keys(s.SlotCPUSeconds)) {
		counter(c.cpu, s.SlotCPUSeconds[slot], strconv.Itoa(slot))
	}

	ready, rollouts := c.board.TakeObservations()
	for _, v := range ready {
		c.readySeconds.Observe(v)
	}
	for _, v := range rollouts {
		c.rolloutSeconds.Observe(v)
	}
	c.readySeconds.Collect(ch)
	c.rolloutSeconds.Collect(ch)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

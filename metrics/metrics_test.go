package metrics

import (
	"testing"

	"github.com/narwhal-init/narwhal/internal/proc"
	"github.com/narwhal-init/narwhal/internal/status"
	dto "github.com/prometheus/client_model/go"
)

// gather scrapes a collector over b and returns each family by name.
func gather(t *testing.T, b *status.Board) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := Registry(New(b, func() uint64 { return 0 }, "test")).Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// labelValues maps each value of label in family mf to its counter's value.
func labelValues(mf *dto.MetricFamily, label string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestLabelledCountersFromZero: before anything happens, every labelled counter already has a
// series at 0 for each value its label can take, so rate() and alerts work from the first
// scrape. narwhal_signals_received_total used to appear only with the first signal.
func TestLabelledCountersFromZero(t *testing.T) {
	mfs := gather(t, status.New(1, 0))
	want := map[string]struct {
		label  string
		values []string
	}{
		"narwhal_signals_received_total": {"signal", actedOn},
		"narwhal_worker_exits_total":     {"reason", []string{"crash", "oom", "stop", "watchdog", "memory", "lifetime", "ready_timeout"}},
		"narwhal_rollouts_total":         {"result", []string{"completed", "aborted", "superseded"}},
	}
	for name, w := range want {
		mf := mfs[name]
		if mf == nil {
			t.Errorf("%s: no series before the first event", name)
			continue
		}
		got := labelValues(mf, w.label)
		for _, v := range w.values {
			if n, ok := got[v]; !ok || n != 0 {
				t.Errorf("%s{%s=%q} = %v (present %v), want 0 from the start", name, w.label, v, n, ok)
			}
		}
	}
}

// TestSignalsCountedOnce: a signal narwhal acts on and one it only forwards are each one series.
func TestSignalsCountedOnce(t *testing.T) {
	b := status.New(1, 0)
	b.CountSignal("SIGHUP")
	b.CountSignal("SIGHUP")
	b.CountSignal("SIGALRM")
	got := labelValues(gather(t, b)["narwhal_signals_received_total"], "signal")
	if got["SIGHUP"] != 2 || got["SIGALRM"] != 1 || got["SIGTERM"] != 0 {
		t.Errorf("signals %v, want SIGHUP 2, SIGALRM 1, SIGTERM 0", got)
	}
	if len(got) != len(actedOn)+1 {
		t.Errorf("%d series, want %d (one per signal)", len(got), len(actedOn)+1)
	}
}

// TestSlotFiguresFromTheBoard: memory and CPU per slot are the supervisor's figures; the
// collector reads no /proc of its own.
func TestSlotFiguresFromTheBoard(t *testing.T) {
	b := status.New(1, 0)
	b.Publish(&status.Snapshot{Mode: "pool", Workers: []status.Worker{
		{Slot: 0, PID: 10, Resident: 100, Proportional: 40}, {Slot: 0, PID: 11, Resident: 50, Proportional: 20}, {Slot: 1, PID: 12, Resident: 7, Proportional: 3},
	}, SlotCPUSeconds: map[int]float64{0: 1.5, 1: 0.25}, SharesKnown: true})
	mfs := gather(t, b)
	mem := map[string]float64{}
	for _, m := range mfs["narwhal_worker_resident_memory_bytes"].GetMetric() {
		mem[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	if mem["0"] != 150 || mem["1"] != 7 {
		t.Errorf("memory by slot %v, want 0: 150 (both processes of the slot), 1: 7", mem)
	}
	if pss := labelValues(mfs["narwhal_worker_proportional_memory_bytes"], "slot"); pss["0"] != 60 || pss["1"] != 3 {
		t.Errorf("proportional memory by slot %v, want 0: 60, 1: 3", pss)
	}
	if _, ok := mfs["narwhal_worker_merged_memory_bytes"]; ok {
		t.Error("merged memory shown without NARWHAL_MEMORY_MERGE")
	}
	if cpu := labelValues(mfs["narwhal_worker_cpu_seconds_total"], "slot"); cpu["0"] != 1.5 || cpu["1"] != 0.25 {
		t.Errorf("cpu by slot %v, want 0: 1.5, 1: 0.25", cpu)
	}
}

// TestTemplateMemory: with preload, the newest template's proportional memory is exposed;
// without a template, nothing is.
func TestTemplateMemory(t *testing.T) {
	b := status.New(1, 0)
	b.Publish(&status.Snapshot{Mode: "pool", SharesKnown: true})
	if _, ok := gather(t, b)["narwhal_template_proportional_memory_bytes"]; ok {
		t.Error("template memory exposed without a template")
	}
	b.Publish(&status.Snapshot{Mode: "pool", SharesKnown: true, Templates: []status.Template{
		{PID: 9, Generation: 2, Proportional: 50 << 20}, {PID: 30, Generation: 3, Proportional: 60 << 20},
	}})
	mf := gather(t, b)["narwhal_template_proportional_memory_bytes"]
	if mf == nil || mf.GetMetric()[0].GetGauge().GetValue() != 60<<20 {
		t.Errorf("template memory %v, want generation 3's, 60 MiB", mf)
	}
}

// TestContainerFigures: the container's memory and the accept-queue overflows come from the
// board, and are absent where they could not be read.
func TestContainerFigures(t *testing.T) {
	b := status.New(1, 0)
	if mfs := gather(t, b); mfs["narwhal_memory_limit_bytes"] != nil || mfs["narwhal_listen_overflows_total"] != nil {
		t.Error("container figures exposed before anything read them")
	}
	b.Publish(&status.Snapshot{Mode: "pool", Container: proc.Container{
		Memory: proc.Memory{Limit: 512 << 20, WorkingSet: 100 << 20}, MemoryKnown: true,
		ListenOverflows: 3, OverflowsKnown: true,
	}})
	mfs := gather(t, b)
	for name, want := range map[string]float64{
		"narwhal_memory_limit_bytes":       512 << 20,
		"narwhal_memory_working_set_bytes": 100 << 20,
		"narwhal_listen_overflows_total":   3,
	} {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) != 1 {
			t.Errorf("%s missing", name)
			continue
		}
		m := mf.GetMetric()[0]
		if got := m.GetGauge().GetValue() + m.GetCounter().GetValue(); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestControlRefused: control socket clients refused for their uid are counted, from 0 at the
// first scrape; the log only samples them.
func TestControlRefused(t *testing.T) {
	b := status.New(1, 0)
	value := func() (float64, bool) {
		mf := gather(t, b)["narwhal_control_refused_total"]
		if mf == nil || len(mf.GetMetric()) != 1 {
			return 0, false
		}
		return mf.GetMetric()[0].GetCounter().GetValue(), true
	}
	if v, ok := value(); !ok || v != 0 {
		t.Errorf("narwhal_control_refused_total before any refusal = %v (present %v), want 0", v, ok)
	}
	b.CountControlRefused()
	b.CountControlRefused()
	if v, ok := value(); v != 2 {
		t.Errorf("narwhal_control_refused_total after 2 refusals = %v (present %v), want 2", v, ok)
	}
}

// TestQueuesFromTheSnapshot: the accept-queue gauges are the loop's last reading, per listener;
// a listener whose queue the kernel does not show has no series, and a backlog of 0 (a socket
// narwhal does not own) none either.
func TestQueuesFromTheSnapshot(t *testing.T) {
	b := status.New(1, 0)
	b.Publish(&status.Snapshot{Mode: "pool", Listeners: []status.Listener{
		{Name: "web", Queued: 7, Backlog: 1024, QueueKnown: true},
		{Name: "admin"},
		{Name: "mine", Queued: 2, QueueKnown: true},
	}})
	mfs := gather(t, b)
	queued := labelValues(mfs["narwhal_listener_queued_connections"], "listener")
	backlog := labelValues(mfs["narwhal_listener_backlog"], "listener")
	if len(queued) != 2 || queued["web"] != 7 || queued["mine"] != 2 {
		t.Errorf("queued %v, want web 7 and mine 2", queued)
	}
	if len(backlog) != 1 || backlog["web"] != 1024 {
		t.Errorf("backlog %v, want web 1024 alone", backlog)
	}
}

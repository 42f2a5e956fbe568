package pool

import (
	"sort"
	"syscall"
	"time"
)

// Template is a generation's template with NARWHAL_PRELOAD: COMMAND started once, which loads
// the app and waits at its fork point; the generation's workers are forked from it.
type Template struct {
	PID     int
	Gen     int
	State   State // Starting until it reaches its fork point; it serves nothing itself
	Started time.Time
	ReadyAt time.Time

	killAt time.Time // Stopping: when it is given up as lost
}

// templates are the machine's templates and their shared backoff: a template that fails,
// before or after its fork point, is started again no sooner than notBefore.
type templates struct {
	byPID     map[int]*Template
	crashes   int
	notBefore time.Time
	// base is the generation whose template the pool forks from outside a rollout: the first,
	// then each rollout's once it completes. An aborted rollout leaves it.
	base int
}

// Templates lists the live templates, oldest generation first.
func (m *Machine) Templates() []Template {
	out := make([]Template, 0, len(m.tmpl.byPID))
	for _, t := range m.tmpl.byPID {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Gen < out[j].Gen || (out[i].Gen == out[j].Gen && out[i].PID < out[j].PID)
	})
	return out
}

// TemplateReady records that the template pid reached its fork point: its generation's workers
// can be forked now.
func (m *Machine) TemplateReady(now time.Time, pid int) {
	t := m.tmpl.byPID[pid]
	if t == nil || t.State != Starting {
		return
	}
	t.State, t.ReadyAt = Ready, now
	m.log.Info("template at its fork point", "event", "template_ready", "pid", pid, "generation", t.Gen,
		"seconds", now.Sub(t.Started).Seconds())
	m.reconcile(now)
}

// templateExited handles the end of a template, and reports whether pid was one.
func (m *Machine) templateExited(now time.Time, pid, code int) bool {
	t := m.tmpl.byPID[pid]
	if t == nil {
		return false
	}
	delete(m.tmpl.byPID, pid)
	// What the app started while it loaded is left in its process group; no worker is (each
	// is in its own group before narwhal learns of it).
	m.fx.Signal(pid, syscall.SIGKILL, true)
	switch t.State {
	case Stopping:
		m.log.Info("template exited", "event", "template_exit", "pid", pid, "generation", t.Gen, "code", code)
	case Starting:
		m.templateFailed(now, t, "exited before its fork point: with NARWHAL_PRELOAD=true, COMMAND must load the app and "+
			"call narwhal's fork point (contrib/python/narwhal_fork.py, contrib/ruby/narwhal_fork.rb)", "code", code)
	case Ready:
		m.templateBackoff(now)
		m.log.Warn("template exited; its workers keep serving, and it is started again", "event", "template_exit",
			"pid", pid, "generation", t.Gen, "code", code, "delay", m.tmpl.notBefore.Sub(now).String())
	}
	m.reconcile(now)
	return true
}

// templateFailed is a template that never reached its fork point: a failed start. A rollout
// waiting for it aborts, and the old generation serves on untouched.
func (m *Machine) templateFailed(now time.Time, t *Template, why string, attrs ...any) {
	m.templateBackoff(now)
	m.log.Error("template "+why, append([]any{"event", "template_failed", "pid", t.PID, "generation", t.Gen,
		"delay", m.tmpl.notBefore.Sub(now).String()}, attrs...)...)
	if m.rollout != nil && m.rollout.gen == t.Gen {
		m.log.Error("rollout aborted: its template did not reach its fork point; the old workers keep serving",
			"event", "rollout_aborted", "generation", t.Gen, "reason", "template")
		m.endRollout(now, RolloutAborted)
		for _, o := range m.workers {
			if o.replacement && o.State == Starting {
				m.stop(now, o, ReasonStop)
			}
		}
	}
}

func (m *Machine) templateBackoff(now time.Time) {
	m.tmpl.crashes++
	delay := m.p.RestartDelay << min(m.tmpl.crashes-1, 30)
	if delay > m.p.RestartDelayMax || delay <= 0 {
		delay = m.p.RestartDelayMax
	}
	m.tmpl.notBefore = now.Add(delay)
}

// keepTemplates runs the templates' timers and starts or stops templates so that the ones
// wanted live: the base generation's, and the rollout's. Others serve no fork and are killed:
// a template holds no connection, so it needs no grace.
func (m *Machine) keepTemplates(now time.Time) {
	for _, t := range m.tmpl.byPID {
		switch {
		case t.State == Starting && !now.Before(t.Started.Add(m.p.ReadyTimeout)):
			m.killTemplate(now, t)
			m.templateFailed(now, t, "did not reach its fork point within NARWHAL_READY_TIMEOUT: with NARWHAL_PRELOAD=true, "+
				"COMMAND must load the app and call narwhal's fork point", "timeout", m.p.ReadyTimeout.String())
		case t.State == Ready && m.tmpl.crashes > 0 && !now.Before(t.ReadyAt.Add(readyResetAfter)):
			m.tmpl.crashes = 0
		case t.State == Stopping && !now.Before(t.killAt):
			delete(m.tmpl.byPID, t.PID)
			m.log.Error("template still running after SIGKILL; giving up on it", "event", "lost", "pid", t.PID, "generation", t.Gen)
		}
	}
	wanted := func(gen int) bool {
		return !m.stopping && (gen == m.tmpl.base || (m.rollout != nil && gen == m.rollout.gen))
	}
	for _, t := range m.tmpl.byPID {
		if t.State != Stopping && !wanted(t.Gen) {
			m.killTemplate(now, t)
		}
	}
	for _, gen := range []int{m.tmpl.base, m.gen} {
		if wanted(gen) && m.liveTemplate(gen) == nil && !now.Before(m.tmpl.notBefore) {
			m.spawnTemplate(now, gen)
		}
	}
}

func (m *Machine) killTemplate(now time.Time, t *Template) {
	if t.State == Stopping {
		return
	}
	// Its whole group: a template forks no worker into it (they leave at once, and the loop
	// is not forking now), but what the app started while loading is there.
	t.State, t.killAt = Stopping, now.Add(abandonAfter)
	m.fx.Signal(t.PID, syscall.SIGKILL, true)
	m.log.Info("stopping template", "event", "template_stop", "pid", t.PID, "generation", t.Gen)
}

func (m *Machine) spawnTemplate(now time.Time, gen int) {
	pid, started, err := m.fx.SpawnTemplate(gen)
	if err != nil {
		m.templateFailed(now, &Template{Gen: gen}, "could not start", "error", err.Error())
		return
	}
	m.tmpl.byPID[pid] = &Template{PID: pid, Gen: gen, State: Starting, Started: latest(now, started)}
	m.log.Info("template started", "event", "template_start", "pid", pid, "generation", gen)
}

func (m *Machine) templateReady(gen int) bool {
	t := m.liveTemplate(gen)
	return t != nil && t.State == Ready
}

// IsTemplate reports whether pid is a template (NARWHAL_PRELOAD).
func (m *Machine) IsTemplate(pid int) bool { return m.tmpl.byPID[pid] != nil }

// liveTemplate is gen's template that is starting or ready, or nil.
func (m *Machine) liveTemplate(gen int) *Template {
	for _, t := range m.tmpl.byPID {
		if t.Gen == gen && t.State != Stopping {
			return t
		}
	}
	return nil
}

// forkGen is the generation a new worker for slot s is forked from, or 0 while no template it
// may use is at its fork point. The rollout's, once ready: it has the code every slot is
// getting. A rollout's replacement waits for it. Anything else comes back from its slot's
// generation's template, or the newest ready one where that is gone.
func (m *Machine) forkGen(s *slot, replacement bool) int {
	if m.rollout != nil && m.templateReady(m.rollout.gen) {
		return m.rollout.gen
	}
	if replacement && s.replace == "rollout" {
		return 0
	}
	if m.templateReady(s.gen) {
		return s.gen
	}
	gen := 0
	for _, t := range m.tmpl.byPID {
		if t.State == Ready && t.Gen > gen {
			gen = t.Gen
		}
	}
	return gen
}

// templateNext is the earliest time after now at which the templates have something to do.
func (m *Machine) templateNext(at func(time.Time)) {
	for _, t := range m.tmpl.byPID {
		switch t.State {
		case Starting:
			at(t.Started.Add(m.p.ReadyTimeout))
		case Ready:
			if m.tmpl.crashes > 0 {
				at(t.ReadyAt.Add(readyResetAfter))
			}
		case Stopping:
			at(t.killAt)
		}
	}
	if !m.stopping && (m.liveTemplate(m.tmpl.base) == nil || (m.rollout != nil && m.liveTemplate(m.rollout.gen) == nil)) {
		at(m.tmpl.notBefore)
	}
}

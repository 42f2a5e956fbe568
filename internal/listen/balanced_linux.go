package listen

import (
	"errors"
	"fmt"
	"slices"

	"github.com/narwhal-init/narwhal/config"
	"golang.org/x/sys/unix"
)

// NARWHAL_SOCKET_MODE=balanced: each TCP listener is a SO_REUSEPORT group of sockets that
// narwhal binds, one per slot, and keeps for its whole life. The worker in slot k gets slot k's
// sockets, so the kernel, not the race to accept, spreads connections across workers; a
// replacement takes over its slot's sockets with whatever waits in them. A program attached to
// each group steers new connections to the slots that have a ready worker. Unix listeners
// cannot be grouped: every slot shares one socket, as in inherit mode.
type Balancer struct {
	listen  config.Listeners
	backlog int

	groups []*group  // by listener; nil for a unix listener
	shared []*Socket // by listener; the unix listeners' sockets
	steer  steering
}

// group is one TCP listener's sockets.
type group struct {
	bySlot map[int]*Socket
	// order is the kernel's array of the group's sockets: index i holds slot order[i]. A
	// steering program returns an index into it. Sockets are appended as they are bound and
	// never closed before narwhal exits, so an index never moves.
	order   []int
	counter int // the round-robin program's map; -1 without one
}

// steering is how new connections reach live slots: an eBPF program that takes them in turn
// (it needs CAP_BPF, or CAP_SYS_ADMIN before Linux 5.8, or unprivileged eBPF), or a classic BPF
// one that picks at random, which needs no privilege.
type steering int

const (
	steerRandom steering = iota
	steerRoundRobin
)

func (s steering) String() string { return [...]string{"random", "round-robin"}[s] }

// Steering names the program that steers new connections, for the log.
func (b *Balancer) Steering() string { return b.steer.String() }

// ErrNoBalance is a balanced mode that cannot be: no TCP listener to group, or a kernel that
// refuses every reuseport program, with which the kernel would hash connections onto slots
// that may have no worker. The pool then runs in inherit mode.
var ErrNoBalance = errors.New("balanced mode unavailable")

// NewBalancer binds slot 0's sockets, so that an address in use is an error at start, and
// finds the steering the kernel allows.
func NewBalancer(ls config.Listeners, backlog int) (*Balancer, error) {
	b := &Balancer{listen: ls, backlog: backlog, groups: make([]*group, len(ls)), shared: make([]*Socket, len(ls))}
	tcp := false
	for i, l := range ls {
		if l.Network != "unix" {
			b.groups[i], tcp = &group{bySlot: map[int]*Socket{}, counter: -1}, true
		}
	}
	if !tcp {
		return nil, fmt.Errorf("%w: no TCP listener (unix sockets cannot be grouped)", ErrNoBalance)
	}
	for i, l := range ls {
		if b.groups[i] == nil {
			s, err := bind(l, backlog, false)
			if err != nil {
				b.Close()
				return nil, err
			}
			b.shared[i] = s
		}
	}
	if _, err := b.ForSlot(0); err != nil {
		b.Close()
		return nil, err
	}
	b.steer = steerRoundRobin
	for _, g := range b.groups {
		if g == nil {
			continue
		}
		var err error
		if g.counter, err = newCounter(); err == nil {
			err = attachRoundRobin(g.bySlot[0], g.counter, []int{0})
		}
		if err != nil {
			b.steer = steerRandom
			break
		}
	}
	if b.steer == steerRandom {
		for _, g := range b.groups { // attaching replaces any round-robin program already there
			if g == nil {
				continue
			}
			if err := attachRandom(g.bySlot[0], []int{0}); err != nil {
				b.Close()
				return nil, fmt.Errorf("%w: the kernel refused a reuseport program: %v", ErrNoBalance, err)
			}
		}
	}
	return b, nil
}

// ForSlot returns slot's sockets, one per listener, binding those it lacks.
func (b *Balancer) ForSlot(slot int) ([]*Socket, error) {
	out := make([]*Socket, len(b.listen))
	for i, g := range b.groups {
		if g == nil {
			out[i] = b.shared[i]
			continue
		}
		s := g.bySlot[slot]
		if s == nil {
			l := b.listen[i]
			if len(g.order) > 0 {
				l.Address = g.bySlot[g.order[0]].Address // port 0 resolved by the first
			}
			var err error
			if s, err = bind(l, b.backlog, true); err != nil {
				return nil, fmt.Errorf("slot %d: %w", slot, err)
			}
			g.bySlot[slot] = s
			g.order = append(g.order, slot)
		}
		out[i] = s
	}
	return out, nil
}

// route steers each group's new connections to the live slots (those with a ready worker);
// with none live, every slot takes its share and keeps it until a worker comes.
func (b *Balancer) Route(live []int) error {
	var errs []error
	for _, g := range b.groups {
		if g == nil {
			continue
		}
		var idx []int
		for i, slot := range g.order {
			if slices.Contains(live, slot) {
				idx = append(idx, i)
			}
		}
		if b.steer == steerRoundRobin {
			errs = append(errs, attachRoundRobin(g.bySlot[g.order[0]], g.counter, idx))
		} else {
			errs = append(errs, attachRandom(g.bySlot[g.order[0]], idx))
		}
	}
	return errors.Join(errs...)
}

// Inodes are every socket's, for the readiness detector.
func (b *Balancer) Inodes() map[uint64]bool {
	out := map[uint64]bool{}
	for i, g := range b.groups {
		if g == nil {
			out[b.shared[i].Inode] = true
			continue
		}
		for _, s := range g.bySlot {
			out[s.Inode] = true
		}
	}
	return out
}

// queue sums listener name's accept queues over the slots.
func (b *Balancer) Queue(name string) (queued, backlog int, ok bool) {
	for i, l := range b.listen {
		if l.Name != name {
			continue
		}
		if b.groups[i] == nil {
			return b.shared[i].Queue()
		}
		for _, s := range b.groups[i].bySlot {
			if q, n, k := s.Queue(); k {
				queued, backlog, ok = queued+q, backlog+n, true
			}
		}
	}
	return queued, backlog, ok
}

// Slots is how many slots have sockets: one more than the highest slot ever bound.
func (b *Balancer) Slots() int {
	n := 0
	for _, g := range b.groups {
		if g != nil {
			for slot := range g.bySlot {
				n = max(n, slot+1)
			}
		}
	}
	return n
}

// SlotQueued counts the connections waiting on slot's own sockets.
func (b *Balancer) SlotQueued(slot int) int {
	n := 0
	for _, g := range b.groups {
		if g == nil || g.bySlot[slot] == nil {
			continue
		}
		if q, _, ok := g.bySlot[slot].Queue(); ok {
			n += q
		}
	}
	return n
}

// First is each listener's first socket, for the listener list and the log.
func (b *Balancer) First() []*Socket {
	out := make([]*Socket, len(b.listen))
	for i, g := range b.groups {
		if g == nil {
			out[i] = b.shared[i]
		} else {
			out[i] = g.bySlot[g.order[0]]
		}
	}
	return out
}

func (b *Balancer) Close() {
	for i, g := range b.groups {
		if g == nil {
			if b.shared[i] != nil {
				b.shared[i].Close()
			}
			continue
		}
		for _, s := range g.bySlot {
			s.Close()
		}
		if g.counter >= 0 {
			unix.Close(g.counter)
			g.counter = -1
		}
	}
}

// Guarantee is what the log says at start about where connections go and what waits on a
// slot without a worker.
func (b *Balancer) Guarantee() string {
	return "new connections go only to slots with a ready worker; what waits on a crashed worker's slot is " +
		"served by its next worker, and a scale-down lets the worker accept what waits on its slot before it stops"
}

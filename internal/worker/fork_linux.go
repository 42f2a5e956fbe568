package worker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/narwhal-init/narwhal/internal/proc"
	"golang.org/x/sys/unix"
)

// ForkTimeout bounds the wait for a template to answer a fork request. The loop waits with it
// (and the reaper, so that the new worker's exit cannot be reaped before it is registered); a
// template that does not answer in time is killed, and started again.
const ForkTimeout = 5 * time.Second

// Preload starts templates and forks workers from them (NARWHAL_PRELOAD). Its methods are
// called from the supervisor's goroutine; each template's Read runs on its own. The wire
// protocol is in docs/preload.md.
type Preload struct {
	*Exec
	mu        sync.Mutex
	templates map[int]*Template // by generation
	seq       uint64
}

// Template is a running template's end of its fork socket.
type Template struct {
	PID, Gen int
	conn     *net.UnixConn

	gone chan struct{} // closed once Read has seen the template's end of the socket close

	mu    sync.Mutex
	want  string     // the id of the fork request waiting for its answer
	reply chan reply // its answer
}

type reply struct {
	pid int
	err error
}

// TemplateReady is a template's message that it reached its fork point.
type TemplateReady struct{ PID int }

func NewPreload(e *Exec) *Preload { return &Preload{Exec: e, templates: map[int]*Template{}} }

// StartTemplate runs COMMAND as generation gen's template: with slot 0's variables and
// descriptors, as a worker would get them, plus NARWHAL_FORK_FD. It must run inside
// reaper.Start; the caller reads the template's messages with Read.
func (p *Preload) StartTemplate(gen int) (*Template, Pipes, error) {
	l, err := p.prepare(0, gen)
	if err != nil {
		return nil, Pipes{}, err
	}
	defer l.closeTheirs()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.pipes.Close()
		return nil, Pipes{}, fmt.Errorf("fork socket: %w", err)
	}
	l.theirs = append(l.theirs, pair[1])
	// The kernel names the sender of each message: a forked worker's answer is its PID.
	if err := unix.SetsockoptInt(pair[0], unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(pair[0])
		l.pipes.Close()
		return nil, Pipes{}, fmt.Errorf("fork socket: SO_PASSCRED: %w", err)
	}
	f := os.NewFile(uintptr(pair[0]), "fork")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		l.pipes.Close()
		return nil, Pipes{}, fmt.Errorf("fork socket: %w", err)
	}
	l.files = append(l.files, uintptr(pair[1]))
	pid, err := p.exec(l, "NARWHAL_FORK_FD="+strconv.Itoa(len(l.files)-1))
	if err != nil {
		c.Close()
		l.pipes.Close()
		return nil, Pipes{}, err
	}
	t := &Template{PID: pid, Gen: gen, conn: c.(*net.UnixConn), reply: make(chan reply, 1), gone: make(chan struct{})}
	p.mu.Lock()
	for g, old := range p.templates {
		select {
		case <-old.gone:
			delete(p.templates, g)
		default:
		}
	}
	p.templates[gen] = t
	p.mu.Unlock()
	return t, l.pipes, nil
}

// Start forks a worker for slot from generation gen's template, which is at its fork point, and
// returns its PID and the read ends of its pipes. It must run inside reaper.Start.
func (p *Preload) Start(slot, gen int) (int, Pipes, error) {
	p.mu.Lock()
	t := p.templates[gen]
	p.seq++
	id := strconv.FormatUint(p.seq, 10)
	p.mu.Unlock()
	if t == nil {
		return 0, Pipes{}, fmt.Errorf("no template of generation %d", gen)
	}
	l, err := p.prepare(slot, gen)
	if err != nil {
		return 0, Pipes{}, err
	}
	defer l.closeTheirs()
	var msg strings.Builder
	var fds []int
	fmt.Fprintf(&msg, "FORK %s\n", id)
	for target, fd := range l.files {
		if target <= 2 && fd == uintptr(target) {
			continue // narwhal's own stdin, stdout, stderr: the template has them already
		}
		fds = append(fds, int(fd))
		fmt.Fprintf(&msg, "FD %d\n", target)
	}
	for _, kv := range l.vars {
		fmt.Fprintf(&msg, "ENV %s\n", kv)
	}
	pid, err := t.fork(id, msg.String(), fds)
	if err != nil {
		l.pipes.Close()
		return 0, Pipes{}, fmt.Errorf("fork from the template (pid %d): %w", t.PID, err)
	}
	return pid, l.pipes, nil
}

func (t *Template) fork(id, msg string, fds []int) (int, error) {
	t.mu.Lock()
	select {
	case r := <-t.reply: // an answer that came just as an earlier request gave up on it
		if r.pid > 0 {
			unix.Kill(r.pid, unix.SIGKILL)
		}
	default:
	}
	t.want = id
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.want = ""
		t.mu.Unlock()
	}()
	t.conn.SetWriteDeadline(time.Now().Add(ForkTimeout))
	if _, _, err := t.conn.WriteMsgUnix([]byte(msg), unix.UnixRights(fds...), nil); err != nil {
		return 0, err
	}
	timer := time.NewTimer(ForkTimeout)
	defer timer.Stop()
	select {
	case r := <-t.reply:
		return t.accept(r)
	case <-t.gone:
		select {
		case r := <-t.reply: // answered, then exited
			return t.accept(r)
		default:
			return 0, errors.New("the template exited")
		}
	case <-timer.C:
		// Hung: the template and its group (a child stuck before it forked the worker, or a
		// worker before it left the group) are killed, and the template's exit starts it again.
		// An answer that came just now is given up on: its worker is killed too.
		unix.Kill(-t.PID, unix.SIGKILL)
		t.mu.Lock()
		t.want = ""
		select {
		case r := <-t.reply:
			if r.pid > 0 {
				unix.Kill(r.pid, unix.SIGKILL)
			}
		default:
		}
		t.mu.Unlock()
		return 0, fmt.Errorf("no answer within %s", ForkTimeout)
	}
}

// accept checks a fork's answer: the worker it names must be narwhal's child by now, or its
// exit would never be reaped here.
func (t *Template) accept(r reply) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.pid <= 0 || r.pid == t.PID {
		return 0, fmt.Errorf("the answer came from pid %d, not from a forked worker", r.pid)
	}
	if ppid, err := proc.Host.PPID(r.pid); err != nil || ppid != os.Getpid() {
		unix.Kill(r.pid, unix.SIGKILL)
		return 0, fmt.Errorf("forked worker %d is not narwhal's child (its parent is %d)", r.pid, ppid)
	}
	return r.pid, nil
}

// maxMessage is the longest message a template sends that is read whole.
const maxMessage = 4096

// Read reads the template's messages until it closes its end or done is closed: READY goes to
// events as TemplateReady, and each answer to the fork waiting for it. A worker forked for a
// request given up on is killed: nobody supervises it.
func (p *Preload) Read(t *Template, done <-chan struct{}, events chan<- any) {
	defer close(t.gone)
	closed := make(chan struct{})
	defer close(closed)
	go func() {
		select {
		case <-done:
			t.conn.Close()
		case <-closed:
		}
	}()
	defer t.conn.Close()
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*16))
	for {
		n, oobn, _, _, err := t.conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return // the template is gone
		}
		sender := senderOf(oob[:oobn])
		verb, rest, _ := strings.Cut(strings.TrimSpace(string(buf[:n])), " ")
		switch verb {
		case "READY":
			select {
			case events <- TemplateReady{PID: t.PID}:
			case <-done:
				return
			}
		case "FORKED", "ERROR":
			id, why, _ := strings.Cut(rest, " ")
			t.mu.Lock()
			wanted := id != "" && id == t.want
			if wanted {
				t.want = ""
				r := reply{pid: sender}
				if verb == "ERROR" {
					r = reply{err: errors.New("the template could not fork: " + why)}
				}
				t.reply <- r
			}
			t.mu.Unlock()
			if !wanted && verb == "FORKED" && sender > 0 {
				unix.Kill(sender, unix.SIGKILL)
			}
		}
	}
}

// senderOf is the PID the kernel gave as a message's sender, 0 without one; descriptors sent
// along, which no message from a template carries, are closed.
func senderOf(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	pid := 0
	for _, m := range msgs {
		if cred, err := unix.ParseUnixCredentials(&m); err == nil {
			pid = int(cred.Pid)
		} else if fds, err := unix.ParseUnixRights(&m); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}
	return pid
}

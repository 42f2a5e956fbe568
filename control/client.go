package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// ErrNoAnswer is a control socket that nothing listens on, or that hung up.
var ErrNoAnswer = errors.New("no narwhal answers on the control socket")

// ErrNameTaken is a socket name held by a process that is not the narwhal it names.
var ErrNameTaken = errors.New("another process holds the control socket name")

// request sends one request and returns a reader of the JSON lines that answer it.
func request(name, req string) (*json.Decoder, io.Closer, error) {
	c, err := net.DialTimeout("unix", name, 2*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (%s): %v", ErrNoAnswer, name, err)
	}
	if err := checkPeer(c.(*net.UnixConn), name); err != nil {
		c.Close()
		return nil, nil, err
	}
	d := json.NewDecoder(bufio.NewReader(c))
	if _, err := fmt.Fprintln(c, req); err != nil {
		// A client that is refused, or turned away as one too many, is answered and hung up on
		// at once, without its request being read: the answer may be there to read even though
		// the request could not be written.
		var r reply
		c.SetReadDeadline(time.Now().Add(time.Second))
		if d.Decode(&r) == nil && r.Error != "" {
			err = errors.New(r.Error)
		} else {
			err = fmt.Errorf("%w (%s): %v", ErrNoAnswer, name, err)
		}
		c.Close()
		return nil, nil, err
	}
	return d, c, nil
}

type reply struct {
	Error        string  `json:"error"`
	Ready        bool    `json:"ready"`
	Reason       string  `json:"reason"`
	Draining     bool    `json:"draining"`
	DelaySeconds float64 `json:"delay_seconds"`
	Already      bool    `json:"already"`
	SinceSeconds float64 `json:"since_seconds"`
	Drained      bool    `json:"drained"`
}

func next(d *json.Decoder, into any) error {
	if err := d.Decode(into); err != nil {
		return fmt.Errorf("%w: %v", ErrNoAnswer, err)
	}
	return nil
}

// GetStatus asks the running narwhal for its state, as raw JSON.
func GetStatus(name string) (json.RawMessage, error) {
	d, c, err := request(name, "status")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var raw json.RawMessage
	if err := next(d, &raw); err != nil {
		return nil, err
	}
	var r reply
	if json.Unmarshal(raw, &r); r.Error != "" {
		return nil, errors.New(r.Error)
	}
	return raw, nil
}

// Healthcheck reports whether the running narwhal is ready, and why not.
func Healthcheck(name string) (bool, string, error) {
	d, c, err := request(name, "healthcheck")
	if err != nil {
		return false, "", err
	}
	defer c.Close()
	var r reply
	if err := next(d, &r); err != nil {
		return false, "", err
	}
	if r.Error != "" {
		return false, "", errors.New(r.Error)
	}
	return r.Ready, r.Reason, nil
}

// Drain makes the running narwhal unready and returns once its NARWHAL_DRAIN_DELAY has passed
// since the first drain. started is called when narwhal has turned unready, with the delay it
// will wait and, when an earlier drain began it, how long ago (0 otherwise).
func Drain(name string, started func(delay, since time.Duration)) error {
	d, c, err := request(name, "drain")
	if err != nil {
		return err
	}
	defer c.Close()
	var r reply
	if err := next(d, &r); err != nil {
		return err
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	var since time.Duration
	if r.Already {
		since = max(time.Duration(r.SinceSeconds*float64(time.Second)), time.Nanosecond)
	}
	started(time.Duration(r.DelaySeconds*float64(time.Second)), since)
	if err := next(d, &r); err != nil {
		return err
	}
	if !r.Drained {
		return fmt.Errorf("%w: drain did not complete", ErrNoAnswer)
	}
	return nil
}

// checkPeer makes sure that the default name, which stands for the narwhal of the client's own
// PID and mount namespaces, is held by a process of those namespaces: anyone who shares the
// network namespace (another container of the pod, the host with hostNetwork) can bind it
// first. A name set in NARWHAL_CONTROL_SOCKET is the user's to vouch for, and may lead to
// another container on purpose; "@narwhal", the name without /proc, has nothing to check.
func checkPeer(c *net.UnixConn, name string) error {
	if name == bareName || name != DefaultName() {
		return nil
	}
	_, pid, err := peer(c)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", name, err)
	}
	if pid == 0 { // SO_PEERCRED's pid of a process the client's PID namespace cannot see
		return fmt.Errorf("%w %s: a process outside this container's PID namespace", ErrNameTaken, name)
	}
	same, err := sameMounts(pid)
	if err != nil {
		return fmt.Errorf("control socket %s: cannot check that pid %d, which holds it, is this container's narwhal: %w", name, pid, err)
	}
	if !same {
		return fmt.Errorf("%w %s: pid %d, of another mount namespace, not this container's narwhal", ErrNameTaken, name, pid)
	}
	return nil
}

// sameMounts reports whether pid sees the client's mount table: mount IDs are unique across
// the system, so two mount namespaces never list the same. /proc/PID/mountinfo is readable by
// anyone, where /proc/PID/ns/mnt needs ptrace rights over pid, which a root client lacks over
// a narwhal of another uid (and any client over a narwhal with more capabilities).
func sameMounts(pid int) (bool, error) {
	theirs, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return false, err
	}
	ours, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	return bytes.Equal(theirs, ours), nil
}

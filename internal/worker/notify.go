package worker

import (
	"fmt"
	"strings"
)

// MaxNotify is the longest notify message read: a datagram, or a line of the notify pipe without
// its newline. systemd's limit is the same order.
const MaxNotify = 4096

// Notify is what one sd_notify message says. Unknown keys are ignored, as systemd does.
type Notify struct {
	Ready           bool   // READY=1
	Stopping        bool   // STOPPING=1
	Watchdog        bool   // WATCHDOG=1
	WatchdogTrigger bool   // WATCHDOG=trigger
	Status          string // STATUS=…
	HasStatus       bool
}

// ParseNotify reads newline-separated KEY=VALUE assignments. It fails on a message that is
// not text of that shape (no '=' in a line, an empty key, a NUL byte, too long), so that
// garbage is reported instead of half-read.
func ParseNotify(msg string) (Notify, error) {
	var n Notify
	if len(msg) > MaxNotify {
		// Not len(msg): readers pass on only MaxNotify+1 bytes of a longer message.
		return n, fmt.Errorf("notify message longer than %d bytes", MaxNotify)
	}
	if strings.IndexByte(msg, 0) >= 0 {
		return n, fmt.Errorf("notify message holds a NUL byte")
	}
	for _, line := range strings.Split(msg, "\n") {
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || key == "" || strings.TrimSpace(key) != key {
			return Notify{}, fmt.Errorf("notify line %q is not KEY=VALUE", clip(line))
		}
		switch key {
		case "READY":
			n.Ready = n.Ready || value == "1"
		case "STOPPING":
			n.Stopping = n.Stopping || value == "1"
		case "WATCHDOG":
			n.Watchdog = n.Watchdog || value == "1"
			n.WatchdogTrigger = n.WatchdogTrigger || value == "trigger"
		case "STATUS":
			n.Status, n.HasStatus = value, true
		}
	}
	return n, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Package ratelog bounds warnings that strangers can cause (notify messages from non-workers,
// refused control clients) to one line per period, so that nobody can flood narwhal's log.
// The line after a quiet spell says how many were left out.
package ratelog

import (
	"log/slog"
	"time"
)

// Limiter logs at most one warning per Every. Its zero value with Every set is ready to use; it
// belongs to one goroutine.
type Limiter struct {
	Every      time.Duration
	last       time.Time
	suppressed int
}

// Warn logs msg with attrs at now, unless a line was logged less than Every ago; then it only
// counts it, for the next line's "suppressed".
func (l *Limiter) Warn(now time.Time, log *slog.Logger, msg string, attrs ...any) {
	if !l.last.IsZero() && now.Sub(l.last) < l.Every {
		l.suppressed++
		return
	}
	if l.suppressed > 0 {
		attrs = append(attrs, "suppressed", l.suppressed)
	}
	log.Warn(msg, attrs...)
	l.last, l.suppressed = now, 0
}

package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOneLinePerPeriod(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := Limiter{Every: 10 * time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 1000; i++ {
		l.Warn(t0.Add(time.Duration(i)*time.Millisecond), log, "dropped")
	}
	l.Warn(t0.Add(10*time.Second), log, "dropped")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || strings.Contains(lines[0], "suppressed") || !strings.Contains(lines[1], "suppressed=999") {
		t.Errorf("1001 warnings over 10 s gave:\n%s\nwant 2 lines, the second with suppressed=999", buf.String())
	}
}

package config

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Each type below decodes one kind of NARWHAL_* value. Decode errors say what is accepted;
// Load prefixes them with the variable and the value given.

// Signal is a signal given by name (TERM, SIGTERM, sigterm) or number (15).
type Signal syscall.Signal

// Real-time signals as glibc and Docker number them: SIGRTMIN is 34 (32 and 33 are libc's).
const (
	sigRTMin = 34
	sigRTMax = 64
)

// ParseSignal accepts a signal name with or without the SIG prefix, in any case (TERM,
// SIGTERM, sigterm), its number (15 or SIG15, as SignalName prints unnamed ones), or a
// real-time signal as RTMIN+n or RTMAX-n. SIGKILL and SIGSTOP are accepted: they are valid
// things to send, just not to catch.
func ParseSignal(s string) (Signal, error) {
	s = strings.TrimSpace(s)
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n, err := strconv.Atoi(name); err == nil && !strings.ContainsAny(name, "+-") {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal number %d out of range 1-64", n)
		}
		return Signal(n), nil
	}
	for _, rt := range []struct {
		prefix string
		base   int
		sign   int
	}{{"RTMIN+", sigRTMin, 1}, {"RTMAX-", sigRTMax, -1}} {
		if off, ok := strings.CutPrefix(name, rt.prefix); ok {
			n, err := strconv.Atoi(off)
			if sig := rt.base + rt.sign*n; err == nil && n >= 0 && sig >= sigRTMin && sig <= sigRTMax {
				return Signal(sig), nil
			}
		}
	}
	if n := unix.SignalNum("SIG" + name); n != 0 {
		return Signal(n), nil
	}
	return 0, fmt.Errorf("unknown signal %q; want a name such as TERM or SIGTERM, RTMIN+n, or a number 1-64", s)
}

func (s *Signal) Decode(v string) error {
	sig, err := ParseSignal(v)
	*s = sig
	return err
}

func (s Signal) String() string { return SignalName(syscall.Signal(s)) }

// SignalName is the conventional name of sig (SIGTERM), or SIG<number> for one without a name.
func SignalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return "SIG" + strconv.Itoa(int(sig))
}

// SignalRewrite maps a received signal to the one forwarded; a zero target drops it.
type SignalRewrite map[syscall.Signal]syscall.Signal

// ParseSignalRewrite reads "TERM:QUIT,USR1:0".
func ParseSignalRewrite(s string) (SignalRewrite, error) {
	m := SignalRewrite{}
	err := parsePairs(s, func(from, to string) error {
		f, err := ParseSignal(from)
		if err != nil {
			return err
		}
		var t Signal
		if strings.TrimSpace(to) != "0" {
			if t, err = ParseSignal(to); err != nil {
				return err
			}
		}
		if _, dup := m[syscall.Signal(f)]; dup {
			return fmt.Errorf("%s is rewritten twice", f)
		}
		m[syscall.Signal(f)] = syscall.Signal(t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w; want FROM:TO pairs separated by commas, such as TERM:QUIT,USR1:0 (0 drops the signal)", err)
	}
	return m, nil
}

func (r *SignalRewrite) Decode(v string) error {
	m, err := ParseSignalRewrite(v)
	*r = m
	return err
}

// Apply returns the signal to forward for sig and whether to forward it at all.
func (r SignalRewrite) Apply(sig syscall.Signal) (syscall.Signal, bool) {
	to, ok := r[sig]
	if !ok {
		return sig, true
	}
	return to, to != 0
}

func (r SignalRewrite) String() string {
	var parts []string
	for from, to := range r {
		parts = append(parts, SignalName(from)+":"+signalOrZero(to))
	}
	return sortedJoin(parts)
}

func signalOrZero(s syscall.Signal) string {
	if s == 0 {
		return "0"
	}
	return SignalName(s)
}

// ExitRemap reports some child exit codes as others: "143:0" reports a JVM's SIGTERM exit as 0.
type ExitRemap map[int]int

func ParseExitRemap(s string) (ExitRemap, error) {
	m := ExitRemap{}
	err := parsePairs(s, func(from, to string) error {
		f, err := parseExitCode(from)
		if err != nil {
			return err
		}
		t, err := parseExitCode(to)
		if err != nil {
			return err
		}
		if _, dup := m[f]; dup {
			return fmt.Errorf("exit code %d is remapped twice", f)
		}
		m[f] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w; want FROM:TO pairs of exit codes 0-255 separated by commas, such as 143:0", err)
	}
	return m, nil
}

func parseExitCode(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("%q is not an exit code", s)
	}
	return n, nil
}

func (r *ExitRemap) Decode(v string) error {
	m, err := ParseExitRemap(v)
	*r = m
	return err
}

// Apply returns the code narwhal reports for the child's code.
func (r ExitRemap) Apply(code int) int {
	if to, ok := r[code]; ok {
		return to
	}
	return code
}

func (r ExitRemap) String() string {
	var parts []string
	for from, to := range r {
		parts = append(parts, fmt.Sprintf("%d:%d", from, to))
	}
	return sortedJoin(parts)
}

// parsePairs calls pair for each "a:b" of a comma-separated list; an empty list is valid.
func parsePairs(s string, pair func(from, to string) error) error {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	for _, item := range strings.Split(s, ",") {
		from, to, ok := strings.Cut(item, ":")
		if !ok || strings.TrimSpace(from) == "" || strings.TrimSpace(to) == "" {
			return fmt.Errorf("%q is not a FROM:TO pair", item)
		}
		if err := pair(from, to); err != nil {
			return err
		}
	}
	return nil
}

// Workers is NARWHAL_WORKERS: a count, auto, or a range MIN-MAX ("2-8", "1-auto") in which
// narwhal sizes the pool itself. A bound of 0 is auto (the container's CPUs).
type Workers struct {
	Min, Max int
	Range    bool
}

func (w *Workers) Decode(v string) error {
	bound := func(s string) (int, bool) {
		s = strings.TrimSpace(s)
		if strings.EqualFold(s, "auto") {
			return 0, true
		}
		n, err := strconv.Atoi(s)
		return n, err == nil && n >= 1 && n <= 4096
	}
	lo, hi, isRange := strings.Cut(v, "-")
	min, ok1 := bound(lo)
	max, ok2 := min, true
	if isRange {
		max, ok2 = bound(hi)
	}
	if !ok1 || !ok2 || (isRange && min > 0 && max > 0 && min > max) {
		return fmt.Errorf("want a whole number from 1 to 4096, auto, or a range MIN-MAX such as 2-8 or 1-auto")
	}
	*w = Workers{Min: min, Max: max, Range: isRange}
	return nil
}

func (w Workers) String() string {
	bound := func(n int) string {
		if n == 0 {
			return "auto"
		}
		return strconv.Itoa(n)
	}
	if w.Range {
		return bound(w.Min) + "-" + bound(w.Max)
	}
	return bound(w.Min)
}

// Auto reports whether a bound is auto, so that the container's CPUs must be found.
func (w Workers) Auto() bool { return w.Min == 0 || (w.Range && w.Max == 0) }

// CPUs is a CPU count as Kubernetes writes one ("2", "1.5", "1500m"), rounded up to whole
// workers; 0 means none given (what the downward API gives for a container without a request).
type CPUs int

// ParseCPUs reads a CPU count, rounded up.
func ParseCPUs(s string) (CPUs, error) {
	s = strings.TrimSpace(s)
	num, scale := s, 1.0
	if m, ok := strings.CutSuffix(s, "m"); ok {
		num, scale = m, 1000
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f/scale > 4096 {
		return 0, fmt.Errorf("want a CPU count such as 2, 1.5 or 1500m (up to 4096; 0 is none)")
	}
	return CPUs(math.Ceil(f / scale)), nil
}

func (c *CPUs) Decode(v string) error {
	n, err := ParseCPUs(v)
	*c = n
	return err
}

func (c CPUs) String() string { return strconv.Itoa(int(c)) }

// Bytes is a size such as 512Mi, 1G or 1048576; 0 means off.
type Bytes int64

var byteUnits = []struct {
	suffix string
	factor float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

func ParseBytes(s string) (Bytes, error) {
	s = strings.TrimSpace(s)
	num, factor := s, 1.0
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, factor = strings.TrimSuffix(s, u.suffix), u.factor
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*factor > math.MaxInt64/2 {
		return 0, fmt.Errorf("want a size such as 512Mi, 2Gi, 500M or a number of bytes (0 is off)")
	}
	return Bytes(f * factor), nil
}

func (b *Bytes) Decode(v string) error {
	n, err := ParseBytes(v)
	*b = n
	return err
}

func (b Bytes) String() string { return strconv.FormatInt(int64(b), 10) }

// Memory is a size (512Mi) or a share of the container's memory limit (20%); zero is off.
type Memory struct {
	Bytes Bytes
	Share float64 // of the limit, 0 < Share ≤ 1, when written with %
}

// ParseMemory reads a size as ParseBytes does, or a percentage from 0 to 100.
func ParseMemory(s string) (Memory, error) {
	if num, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		share, err := ParseShare(num + "%")
		return Memory{Share: float64(share)}, err
	}
	b, err := ParseBytes(s)
	if err != nil {
		return Memory{}, fmt.Errorf("want a size such as 512Mi or 2Gi, a share of the container's memory limit such as 20%%, or 0 for off")
	}
	return Memory{Bytes: b}, nil
}

func (m *Memory) Decode(v string) error {
	var err error
	*m, err = ParseMemory(v)
	return err
}

func (m Memory) String() string {
	if m.Share > 0 {
		return strconv.FormatFloat(m.Share*100, 'f', -1, 64) + "%"
	}
	return m.Bytes.String()
}

// Of is the size in bytes, given the container's memory limit (0 when it has none); false for
// a share of no limit.
func (m Memory) Of(limit int64) (int64, bool) {
	if m.Share > 0 {
		return int64(m.Share * float64(limit)), limit > 0
	}
	return int64(m.Bytes), true
}

// Share is a percentage of the container's memory limit ("90%"); 0 is off.
type Share float64

// ParseShare reads "90%" (or "0" for off) as 0.9.
func ParseShare(s string) (Share, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	num, ok := strings.CutSuffix(s, "%")
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || !(f > 0 && f <= 100) {
		return 0, fmt.Errorf("want a share of the container's memory limit from 1%% to 100%%, such as 90%%, or 0 for off")
	}
	return Share(f / 100), nil
}

func (sh *Share) Decode(v string) error {
	var err error
	*sh, err = ParseShare(v)
	return err
}

func (sh Share) String() string {
	if sh == 0 {
		return "0"
	}
	return strconv.FormatFloat(float64(sh)*100, 'f', -1, 64) + "%"
}

// Int is a whole number written in decimal (envconfig would read 010 as octal 8).
type Int int

func (i *Int) Decode(v string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return fmt.Errorf("want a whole number written in decimal")
	}
	*i = Int(n)
	return nil
}

// Duration is a non-negative time.Duration ("25s", "1m30s", "0").
type Duration time.Duration

func (d *Duration) Decode(v string) error {
	p, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || p < 0 {
		return fmt.Errorf("want a duration such as 500ms, 25s or 1m30s, not negative")
	}
	*d = Duration(p)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// Choice is one of a fixed set of words; the set is given by the field's `choices` tag.
type Choice string

// Address is host:port, empty, or "off".
type Address string

func (a *Address) Decode(v string) error {
	v = strings.TrimSpace(v)
	if v != "" && v != "off" {
		if _, port, err := net.SplitHostPort(v); err != nil || !validPort(port) {
			return fmt.Errorf("want host:port such as :9090 or 127.0.0.1:9090, or off")
		}
	}
	*a = Address(v)
	return nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

// Paths is a comma-separated list of files and directories.
type Paths []string

func (p *Paths) Decode(v string) error {
	var out Paths
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, filepath.Clean(part))
		}
	}
	*p = out
	return nil
}

func (p Paths) String() string { return strings.Join(p, ",") }

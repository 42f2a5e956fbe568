package config_test

import (
	"math"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/config"
)

func TestParseSignal(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want syscall.Signal
	}{
		{"TERM", syscall.SIGTERM},
		{"SIGTERM", syscall.SIGTERM},
		{"sigterm", syscall.SIGTERM},
		{"term", syscall.SIGTERM},
		{"Term", syscall.SIGTERM},
		{"SigQuit", syscall.SIGQUIT},
		{" hup ", syscall.SIGHUP},
		{"USR1", syscall.SIGUSR1},
		{"SIGUSR2", syscall.SIGUSR2},
		{"winch", syscall.SIGWINCH},
		{"KILL", syscall.SIGKILL},
		{"SIGSTOP", syscall.SIGSTOP},
		{"15", syscall.SIGTERM},
		{"9", syscall.SIGKILL},
		{" 3 ", syscall.SIGQUIT},
		{"1", syscall.SIGHUP},
		{"34", syscall.Signal(34)},
		{"64", syscall.Signal(64)},
	}
	for _, tc := range good {
		got, err := config.ParseSignal(tc.in)
		if err != nil {
			t.Errorf("ParseSignal(%q): %v", tc.in, err)
			continue
		}
		if syscall.Signal(got) != tc.want {
			t.Errorf("ParseSignal(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}

	bad := []string{
		"", " ", "0", "-1", "65", "999", "1.5", "0x0f",
		"SIG", "FOO", "SIGFOO", "SIGSIGTERM", "TERM QUIT", "TERM,QUIT", "SIG TERM", "-TERM",
	}
	for _, in := range bad {
		got, err := config.ParseSignal(in)
		if err == nil {
			t.Errorf("ParseSignal(%q) = %d, want an error", in, got)
			continue
		}
		if got != 0 {
			t.Errorf("ParseSignal(%q) returned signal %d along with its error", in, got)
		}
		if !strings.Contains(err.Error(), "1-64") {
			t.Errorf("ParseSignal(%q) error %q does not say what is accepted (1-64)", in, err)
		}
	}
}

func TestSignalDecodeAndString(t *testing.T) {
	t.Parallel()
	var s config.Signal
	if err := s.Decode("quit"); err != nil {
		t.Fatalf("Decode(quit): %v", err)
	}
	if syscall.Signal(s) != syscall.SIGQUIT {
		t.Errorf("Decode(quit) = %d, want %d", s, syscall.SIGQUIT)
	}
	if got := s.String(); got != "SIGQUIT" {
		t.Errorf("String() = %q, want SIGQUIT", got)
	}
	if err := s.Decode("SIGNOPE"); err == nil {
		t.Errorf("Decode(SIGNOPE) succeeded with %v", s)
	}
	for sig, want := range map[syscall.Signal]string{
		syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL", syscall.SIGHUP: "SIGHUP",
	} {
		if got := config.SignalName(sig); got != want {
			t.Errorf("SignalName(%d) = %q, want %q", sig, got, want)
		}
	}
}

func TestParseSignalRewrite(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want config.SignalRewrite
	}{
		{"", config.SignalRewrite{}},
		{"   ", config.SignalRewrite{}},
		{"TERM:QUIT", config.SignalRewrite{syscall.SIGTERM: syscall.SIGQUIT}},
		{"TERM:QUIT,USR1:0", config.SignalRewrite{syscall.SIGTERM: syscall.SIGQUIT, syscall.SIGUSR1: 0}},
		{"SIGTERM:SIGQUIT", config.SignalRewrite{syscall.SIGTERM: syscall.SIGQUIT}},
		{" term : quit , usr1 : 0 ", config.SignalRewrite{syscall.SIGTERM: syscall.SIGQUIT, syscall.SIGUSR1: 0}},
		{"15:3", config.SignalRewrite{syscall.SIGTERM: syscall.SIGQUIT}},
		{"HUP:HUP", config.SignalRewrite{syscall.SIGHUP: syscall.SIGHUP}},
		{"INT:TERM,TERM:INT", config.SignalRewrite{syscall.SIGINT: syscall.SIGTERM, syscall.SIGTERM: syscall.SIGINT}},
		{"WINCH:0,TTIN:0,TTOU:0", config.SignalRewrite{syscall.SIGWINCH: 0, syscall.SIGTTIN: 0, syscall.SIGTTOU: 0}},
	}
	for _, tc := range good {
		got, err := config.ParseSignalRewrite(tc.in)
		if err != nil {
			t.Errorf("ParseSignalRewrite(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSignalRewrite(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}

	bad := []string{
		"TERM",                  // not a pair
		"TERM:",                 // no target
		":QUIT",                 // no source
		"TERM:QUIT,",            // empty trailing pair
		",TERM:QUIT",            // empty leading pair
		"TERM:QUIT,,USR1:0",     // empty pair in the middle
		"TERM:QUIT,TERM:INT",    // rewritten twice
		"TERM:QUIT,SIGTERM:INT", // twice, under two spellings
		"15:QUIT,term:INT",      // twice, by number and by name
		"TERM:FOO",              // unknown target
		"FOO:TERM",              // unknown source
		"0:TERM",                // 0 only makes sense as a target
		"TERM:65",               // target out of range
		"TERM:QUIT:INT",         // three parts
		"TERM;QUIT",
		"TERM=QUIT",
	}
	for _, in := range bad {
		got, err := config.ParseSignalRewrite(in)
		if err == nil {
			t.Errorf("ParseSignalRewrite(%q) = %v, want an error", in, got)
			continue
		}
		if got != nil {
			t.Errorf("ParseSignalRewrite(%q) returned %v along with its error", in, got)
		}
		if !strings.Contains(err.Error(), "FROM:TO") {
			t.Errorf("ParseSignalRewrite(%q) error %q does not show the accepted form", in, err)
		}
	}
}

func TestSignalRewriteApply(t *testing.T) {
	t.Parallel()
	r, err := config.ParseSignalRewrite("TERM:QUIT,USR1:0")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in      syscall.Signal
		want    syscall.Signal
		forward bool
	}{
		{syscall.SIGTERM, syscall.SIGQUIT, true},
		{syscall.SIGUSR1, 0, false},
		{syscall.SIGHUP, syscall.SIGHUP, true},
		{syscall.SIGQUIT, syscall.SIGQUIT, true}, // a rewrite is not applied backwards
	}
	for _, tc := range cases {
		got, forward := r.Apply(tc.in)
		if got != tc.want || forward != tc.forward {
			t.Errorf("Apply(%v) = %v, %v; want %v, %v", tc.in, got, forward, tc.want, tc.forward)
		}
	}

	var none config.SignalRewrite
	if got, forward := none.Apply(syscall.SIGTERM); got != syscall.SIGTERM || !forward {
		t.Errorf("nil rewrite: Apply(SIGTERM) = %v, %v; want SIGTERM, true", got, forward)
	}

	if got, want := r.String(), "SIGTERM:SIGQUIT,SIGUSR1:0"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var d config.SignalRewrite
	if err := d.Decode("HUP:0"); err != nil || !reflect.DeepEqual(d, config.SignalRewrite{syscall.SIGHUP: 0}) {
		t.Errorf("Decode(HUP:0) = %v, %v", d, err)
	}
}

func TestParseExitRemap(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want config.ExitRemap
	}{
		{"", config.ExitRemap{}},
		{"143:0", config.ExitRemap{143: 0}},
		{"143:0,137:1", config.ExitRemap{143: 0, 137: 1}},
		{" 143 : 0 , 130 : 0 ", config.ExitRemap{143: 0, 130: 0}},
		{"0:255,255:0", config.ExitRemap{0: 255, 255: 0}},
		{"1:1", config.ExitRemap{1: 1}},
	}
	for _, tc := range good {
		got, err := config.ParseExitRemap(tc.in)
		if err != nil {
			t.Errorf("ParseExitRemap(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseExitRemap(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}

	bad := []string{
		"143", "143:", ":0", "143:999", "256:0", "-1:0", "143:-1",
		"143:0,143:1", "143:0,", ",143:0", "abc:0", "143:zero", "1.5:0", "143:0:1", "143=0",
	}
	for _, in := range bad {
		got, err := config.ParseExitRemap(in)
		if err == nil {
			t.Errorf("ParseExitRemap(%q) = %v, want an error", in, got)
			continue
		}
		if got != nil {
			t.Errorf("ParseExitRemap(%q) returned %v along with its error", in, got)
		}
		if !strings.Contains(err.Error(), "0-255") {
			t.Errorf("ParseExitRemap(%q) error %q does not say what is accepted (0-255)", in, err)
		}
	}
}

func TestExitRemapApply(t *testing.T) {
	t.Parallel()
	r, err := config.ParseExitRemap("143:0,1:2")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[int]int{143: 0, 1: 2, 0: 0, 2: 2, 137: 137, 255: 255} {
		if got := r.Apply(in); got != want {
			t.Errorf("Apply(%d) = %d, want %d", in, got, want)
		}
	}
	var none config.ExitRemap
	if got := none.Apply(143); got != 143 {
		t.Errorf("nil remap: Apply(143) = %d, want 143", got)
	}
	if got, want := r.String(), "143:0,1:2"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestWorkersDecode(t *testing.T) {
	t.Parallel()
	good := map[string]config.Workers{
		"auto": {}, "AUTO": {}, " Auto ": {}, "1": {1, 1, false}, "4": {4, 4, false}, " 8 ": {8, 8, false},
		"4096": {4096, 4096, false}, "2-8": {2, 8, true}, "1-auto": {1, 0, true}, "auto-8": {0, 8, true},
		"auto-auto": {0, 0, true}, "3-3": {3, 3, true}, " 2 - 4 ": {2, 4, true},
	}
	for in, want := range good {
		w := config.Workers{Min: -1}
		if err := w.Decode(in); err != nil {
			t.Errorf("Decode(%q): %v", in, err)
			continue
		}
		if w != want {
			t.Errorf("Decode(%q) = %+v, want %+v", in, w, want)
		}
		if again := (config.Workers{}); again.Decode(w.String()) != nil || again != want {
			t.Errorf("Decode(%q).String() = %q does not decode back", in, w.String())
		}
	}
	for _, in := range []string{"", "0", "-1", "4097", "abc", "1.5", "auto4", "4 workers", "0x10", "8-2", "2-", "-", "1-2-3", "0-4"} {
		var w config.Workers
		err := w.Decode(in)
		if err == nil {
			t.Errorf("Decode(%q) = %+v, want an error", in, w)
			continue
		}
		if !strings.Contains(err.Error(), "1 to 4096") || !strings.Contains(err.Error(), "auto") {
			t.Errorf("Decode(%q) error %q does not say what is accepted", in, err)
		}
	}
	if got := (config.Workers{}).String(); got != "auto" {
		t.Errorf("Workers{}.String() = %q, want auto", got)
	}
	if got := (config.Workers{Min: 1, Range: true}).String(); got != "1-auto" {
		t.Errorf("Workers{1, auto}.String() = %q, want 1-auto", got)
	}
}

func TestParseBytes(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want config.Bytes
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"1Ki", 1 << 10},
		{"512Mi", 512 << 20},
		{"2Gi", 2 << 30},
		{"1Ti", 1 << 40},
		{"1.5Gi", 3 << 29},
		{"1K", 1000},
		{"1k", 1000},
		{"500M", 500_000_000},
		{"1G", 1_000_000_000},
		{"2T", 2_000_000_000_000},
		{" 64Mi ", 64 << 20},
		{"0Mi", 0},
	}
	for _, tc := range good {
		got, err := config.ParseBytes(tc.in)
		if err != nil {
			t.Errorf("ParseBytes(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}

	bad := []string{
		"", " ", "-1", "-1Mi", "-0.5Gi", "lots", "Mi", "Ki", "1 Mi", "1MB", "1KiB", "1mi", "1.5.0",
		"Inf", "NaN", "1e300", "9223372036854775807", "8Ei", "1Gi1",
	}
	for _, in := range bad {
		got, err := config.ParseBytes(in)
		if err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), "512Mi") {
			t.Errorf("ParseBytes(%q) error %q does not show an accepted example", in, err)
		}
	}

	var b config.Bytes
	if err := b.Decode("3Ki"); err != nil || b != 3072 {
		t.Errorf("Decode(3Ki) = %d, %v; want 3072", b, err)
	}
	if got := b.String(); got != "3072" {
		t.Errorf("String() = %q, want 3072", got)
	}
}

func TestDurationDecode(t *testing.T) {
	t.Parallel()
	good := map[string]time.Duration{
		"0": 0, "25s": 25 * time.Second, "1m30s": 90 * time.Second, "500ms": 500 * time.Millisecond,
		" 2s ": 2 * time.Second, "6h": 6 * time.Hour, "0s": 0,
	}
	for in, want := range good {
		d := config.Duration(-1)
		if err := d.Decode(in); err != nil {
			t.Errorf("Decode(%q): %v", in, err)
			continue
		}
		if d.D() != want {
			t.Errorf("Decode(%q) = %v, want %v", in, d.D(), want)
		}
	}
	for _, in := range []string{"", "-1s", "-1ns", "forever", "1", "25", "1d", "1 s", "s"} {
		var d config.Duration
		err := d.Decode(in)
		if err == nil {
			t.Errorf("Decode(%q) = %v, want an error", in, d)
			continue
		}
		if !strings.Contains(err.Error(), "25s") {
			t.Errorf("Decode(%q) error %q does not show an accepted example", in, err)
		}
	}
	if got := config.Duration(90 * time.Second).String(); got != "1m30s" {
		t.Errorf("String() = %q, want 1m30s", got)
	}
}

func TestAddressDecode(t *testing.T) {
	t.Parallel()
	good := map[string]config.Address{
		"":               "",
		"off":            "off",
		":9090":          ":9090",
		" :9090 ":        ":9090",
		"127.0.0.1:9090": "127.0.0.1:9090",
		"[::1]:9090":     "[::1]:9090",
		"[::]:9090":      "[::]:9090",
		"localhost:9090": "localhost:9090",
		":0":             ":0",
		":65535":         ":65535",
	}
	for in, want := range good {
		a := config.Address("unset")
		if err := a.Decode(in); err != nil {
			t.Errorf("Decode(%q): %v", in, err)
			continue
		}
		if a != want {
			t.Errorf("Decode(%q) = %q, want %q", in, a, want)
		}
	}
	for _, in := range []string{"9090", "localhost", ":65536", ":http", ":-1", "[::1:9090", "::1:9090", "on", "http://:9090"} {
		var a config.Address
		err := a.Decode(in)
		if err == nil {
			t.Errorf("Decode(%q) = %q, want an error", in, a)
			continue
		}
		if !strings.Contains(err.Error(), "off") || !strings.Contains(err.Error(), ":9090") {
			t.Errorf("Decode(%q) error %q does not say what is accepted", in, err)
		}
	}
}

func TestBytesLimit(t *testing.T) {
	t.Parallel()
	// The largest size accepted stays at most MaxInt64/2, so sums of two sizes cannot overflow.
	b, err := config.ParseBytes("4000000T")
	if err != nil {
		t.Fatalf("ParseBytes(4000000T): %v", err)
	}
	if b <= 0 || int64(b) > math.MaxInt64/2 {
		t.Errorf("ParseBytes(4000000T) = %d, want a positive size at most MaxInt64/2", b)
	}
	if b, err := config.ParseBytes("5000000T"); err == nil {
		t.Errorf("ParseBytes(5000000T) = %d, want an error (over MaxInt64/2)", b)
	}
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string]config.CPUs{
		"0": 0, "1": 1, "2": 2, "1.5": 2, "1500m": 2, "250m": 1, "2000m": 2, " 3 ": 3, "0m": 0, "4096": 4096,
	} {
		if got, err := config.ParseCPUs(in); err != nil || got != want {
			t.Errorf("ParseCPUs(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "two", "1.5 m", "m", "4097", "Inf", "NaN", "1Gi"} {
		if got, err := config.ParseCPUs(bad); err == nil {
			t.Errorf("ParseCPUs(%q) = %d, want an error", bad, got)
		}
	}
}

func TestParseMemoryAndShare(t *testing.T) {
	for in, want := range map[string]config.Memory{
		"0": {}, "512Mi": {Bytes: 512 << 20}, "20%": {Share: 0.2}, "100%": {Share: 1}, " 12.5% ": {Share: 0.125},
	} {
		if got, err := config.ParseMemory(in); err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"0%", "101%", "-5%", "%", "20 %x", "lots", "-1"} {
		if got, err := config.ParseMemory(bad); err == nil {
			t.Errorf("ParseMemory(%q) = %+v, want an error", bad, got)
		}
	}
	if b, ok := (config.Memory{Share: 0.2}).Of(1000); !ok || b != 200 {
		t.Errorf("20%% of 1000 = %d, %v", b, ok)
	}
	if _, ok := (config.Memory{Share: 0.2}).Of(0); ok {
		t.Error("a share of no limit resolved")
	}
	for in, want := range map[string]config.Share{"0": 0, "90%": 0.9, "100%": 1} {
		if got, err := config.ParseShare(in); err != nil || got != want {
			t.Errorf("ParseShare(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"90", "0.9", "0%", "150%", "x%"} {
		if _, err := config.ParseShare(bad); err == nil {
			t.Errorf("ParseShare(%q) did not fail", bad)
		}
	}
}

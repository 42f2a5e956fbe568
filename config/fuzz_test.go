package config_test

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/narwhal-init/narwhal/config"
)

// The environment is input from outside, so each parser is fuzzed: it must not panic, and
// what it accepts must hold the invariants the rest of narwhal relies on.

func FuzzParseSignalRewrite(f *testing.F) {
	for _, s := range []string{
		"", "TERM:QUIT,USR1:0", "SIGTERM:SIGQUIT", " term : quit ", "15:3", "HUP:HUP", "INT:TERM,TERM:INT",
		"KILL:0", "TERM", "TERM:", ":QUIT", "TERM:QUIT,TERM:INT", "TERM:QUIT,", "TERM:65", "0:TERM", "a:b:c", ",",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := config.ParseSignalRewrite(s)
		if err != nil {
			if r != nil {
				t.Fatalf("ParseSignalRewrite(%q) returned %v along with error %v", s, r, err)
			}
			return
		}
		if want := len(strings.Split(s, ",")); strings.TrimSpace(s) != "" && len(r) != want {
			t.Errorf("ParseSignalRewrite(%q) has %d entries, want one per pair (%d)", s, len(r), want)
		}
		for from, to := range r {
			if from < 1 || from > 64 || to < 0 || to > 64 {
				t.Errorf("ParseSignalRewrite(%q) maps %d to %d, outside the signals 1-64 (0 for drop)", s, from, to)
			}
			got, forward := r.Apply(from)
			if got != to || forward != (to != 0) {
				t.Errorf("Apply(%d) = %d, %v; the map says %d", from, got, forward, to)
			}
		}
		again, err := config.ParseSignalRewrite(r.String())
		if err != nil {
			t.Fatalf("ParseSignalRewrite(%q) = %v, whose String() %q does not parse: %v", s, r, r.String(), err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Errorf("ParseSignalRewrite(%q) = %v, but its String() %q parses to %v", s, r, r.String(), again)
		}
	})
}

func FuzzParseExitRemap(f *testing.F) {
	for _, s := range []string{
		"", "143:0", "143:0,137:1", " 143 : 0 ", "0:255,255:0", "+1:2", "143", "143:999", "256:0", "-1:0",
		"143:0,143:1", "143:0,", "1:2:3", "0x1:0", "١:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := config.ParseExitRemap(s)
		if err != nil {
			if r != nil {
				t.Fatalf("ParseExitRemap(%q) returned %v along with error %v", s, r, err)
			}
			return
		}
		if want := len(strings.Split(s, ",")); strings.TrimSpace(s) != "" && len(r) != want {
			t.Errorf("ParseExitRemap(%q) has %d entries, want one per pair (%d)", s, len(r), want)
		}
		for from, to := range r {
			if from < 0 || from > 255 || to < 0 || to > 255 {
				t.Errorf("ParseExitRemap(%q) maps %d to %d, outside the exit codes 0-255", s, from, to)
			}
		}
		for code := 0; code <= 255; code++ {
			want, remapped := r[code]
			if !remapped {
				want = code
			}
			if got := r.Apply(code); got != want {
				t.Errorf("ParseExitRemap(%q).Apply(%d) = %d, want %d", s, code, got, want)
			}
		}
		again, err := config.ParseExitRemap(r.String())
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Errorf("ParseExitRemap(%q) = %v, but its String() %q parses to %v, %v", s, r, r.String(), again, err)
		}
	})
}

var listenerName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)

func FuzzParseListeners(f *testing.F) {
	for _, s := range []string{
		"", ":8080", "127.0.0.1:8080", "[::]:8080", "localhost:80", "tcp://:8080", "tcp4://0.0.0.0:8080",
		"tcp6://[::1]:8080", "unix:///run/app.sock", "unix://@abstract", "web=:8080,admin=unix:///a=b",
		":8080,:8081", "web=:8080,web=:8081", ":8080,:8080", ":0", ":65536", "http://x:1", "unix://rel",
		"=:80", "a b=:80", ":8080,", "listen1=:80,:81", "[fe80::1%eth0]:80", "tcp://[::]:",
		"tcp4://[::1]:80", "tcp6://127.0.0.1:80", "tcp4://[::ffff:1.2.3.4]:80", "tcp4://[::]:80",
		"127.0.0.1:80,tcp4://127.0.0.1:80", ":80,0.0.0.0:80", "tcp6://:80,tcp4://:80", "unix:///a,unix:////a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := config.ParseListeners(s)
		if err != nil {
			if ls != nil {
				t.Fatalf("ParseListeners(%q) returned %v along with error %v", s, ls, err)
			}
			return
		}
		if strings.TrimSpace(s) == "" {
			if len(ls) != 0 {
				t.Fatalf("ParseListeners(%q) = %v, want none", s, ls)
			}
			return
		}
		if want := len(strings.Split(s, ",")); len(ls) != want {
			t.Errorf("ParseListeners(%q) has %d listeners, want one per item (%d)", s, len(ls), want)
		}
		names := map[string]bool{}
		addrs := map[string]bool{}
		for _, l := range ls {
			if names[l.Name] {
				t.Errorf("ParseListeners(%q): name %q used twice", s, l.Name)
			}
			names[l.Name] = true
			if !listenerName.MatchString(l.Name) {
				t.Errorf("ParseListeners(%q): name %q is not usable in LISTEN_FDNAMES", s, l.Name)
			}
			if key := boundAddress(t, l); addrs[key] {
				t.Errorf("ParseListeners(%q): %s listed twice", s, key)
			} else {
				addrs[key] = true
			}
			switch l.Network {
			case "tcp", "tcp4", "tcp6":
				if p := l.Port(); p < 1 || p > 65535 {
					t.Errorf("ParseListeners(%q): %v has port %d", s, l, p)
				}
			case "unix":
				if !strings.HasPrefix(l.Address, "/") && !strings.HasPrefix(l.Address, "@") || len(l.Address) > 107 {
					t.Errorf("ParseListeners(%q): %v is not an absolute path or @name of at most 107 bytes", s, l)
				}
				if l.Port() != 0 {
					t.Errorf("ParseListeners(%q): unix socket %v has port %d", s, l, l.Port())
				}
			default:
				t.Errorf("ParseListeners(%q): %v has network %q", s, l, l.Network)
			}
		}
		again, err := config.ParseListeners(ls.String())
		if err != nil || !reflect.DeepEqual(again, ls) {
			t.Errorf("ParseListeners(%q) = %v, but its String() parses to %v, %v", s, ls, again, err)
		}
	})
}

// boundAddress is the socket l binds, as Go's resolver sees it: two listeners that bind the same
// one have the same key. An IP literal Go cannot bind on l's network fails the test.
func boundAddress(t *testing.T, l config.Listener) string {
	if l.Network == "unix" {
		if strings.HasPrefix(l.Address, "@") {
			return "unix " + l.Address
		}
		return "unix " + filepath.Clean(l.Address)
	}
	if host, _, _ := net.SplitHostPort(l.Address); host == "localhost" {
		return l.Network + " " + l.Address // what it resolves to is the machine's
	}
	a, err := net.ResolveTCPAddr(l.Network, l.Address)
	if err != nil {
		t.Errorf("%v was accepted, but Go cannot bind it: %v", l, err)
		return l.Network + " " + l.Address
	}
	switch {
	case a.IP == nil || a.IP.IsUnspecified():
		return fmt.Sprintf("%s *:%d", l.Network, a.Port) // tcp's is dual-stack, tcp4's and tcp6's are not
	case a.IP.To4() != nil:
		return fmt.Sprintf("ipv4 %s:%d", a.IP.To4(), a.Port)
	}
	return fmt.Sprintf("ipv6 [%s]:%d", a.IP, a.Port)
}

// isSeparator is what splits words in SplitCommand, as in a shell with the default IFS.
func isSeparator(r rune) bool { return r == ' ' || r == '\t' || r == '\n' }

func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{
		"", "/app/migrate --to latest", "'a b' c", `"a b" c`, `'it'\''s'`, `"say \"hi\""`, `a\ b`,
		`"\$HOME"`, "a\\\nb", "a \\\n b", `''`, `a "" b`, `'abc`, `"abc`, `abc\`, "\xff\xfe", "tab\there",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := config.SplitCommand(s)
		if err != nil {
			if args != nil {
				t.Fatalf("SplitCommand(%q) returned %q along with error %v", s, []string(args), err)
			}
			return
		}
		back, err := config.SplitCommand(args.String())
		if err != nil {
			t.Fatalf("SplitCommand(%q) = %q, whose String() %q does not split: %v", s, []string(args), args.String(), err)
		}
		if !slices.Equal(back, args) {
			t.Errorf("SplitCommand(%q) = %q; its String() %q splits to %q", s, []string(args), args.String(), []string(back))
		}
		if utf8.ValidString(s) && !strings.ContainsAny(s, `'"\`) {
			if want := strings.FieldsFunc(s, isSeparator); !slices.Equal(args, want) {
				t.Errorf("SplitCommand(%q) = %q; without quotes or backslashes, want the words %q", s, []string(args), want)
			}
		}
		// s as one argument, whatever it holds, must survive quoting and splitting.
		if utf8.ValidString(s) {
			one := config.Command{s}
			back, err := config.SplitCommand(one.String())
			if err != nil || len(back) != 1 || back[0] != s {
				t.Errorf("Command{%q}.String() = %q splits to %q, %v", s, one.String(), []string(back), err)
			}
		}
	})
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{
		"0", "1048576", "512Mi", "1Ki", "2Gi", "1Ti", "1.5Gi", "1K", "1k", "500M", "1G", "1T", " 64Mi ",
		"-1", "-0", "lots", "Mi", "1 Mi", "1MB", "Inf", "NaN", "1e300", "9223372036854775807", "0x1p10Ki", "1e-9",
	} {
		f.Add(s)
	}
	units := map[string]int64{"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
		"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := config.ParseBytes(s)
		if err != nil {
			return
		}
		if b < 0 || int64(b) > math.MaxInt64/2 {
			t.Fatalf("ParseBytes(%q) = %d, outside 0..MaxInt64/2", s, b)
		}
		if again, err := config.ParseBytes(b.String()); err != nil || again != b {
			t.Errorf("ParseBytes(%q) = %d, but its String() %q parses to %d, %v", s, b, b.String(), again, err)
		}
		// A whole number with a unit is exactly that many units, while it fits a float64 exactly.
		trimmed := strings.TrimSpace(s)
		end := strings.IndexFunc(trimmed, func(r rune) bool { return r < '0' || r > '9' })
		if end < 0 {
			end = len(trimmed)
		}
		factor, ok := units[trimmed[end:]]
		n, err := strconv.ParseInt(trimmed[:end], 10, 64)
		if ok && err == nil && n <= (1<<53)/factor {
			if want := config.Bytes(n * factor); b != want {
				t.Errorf("ParseBytes(%q) = %d, want %d", s, b, want)
			}
		}
	})
}

func FuzzParseCPUs(f *testing.F) {
	for _, s := range []string{"0", "1", "2", "1.5", "1500m", "250m", " 4 ", "4096", "4097", "-1", "1.5m", "m", "2 m", "Inf", "NaN", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := config.ParseCPUs(s)
		if err != nil {
			return
		}
		if c < 0 || c > 4096 {
			t.Fatalf("ParseCPUs(%q) = %d, outside 0..4096", s, c)
		}
		if again, err := config.ParseCPUs(c.String()); err != nil || again != c {
			t.Errorf("ParseCPUs(%q) = %d, but its String() %q parses to %d, %v", s, c, c.String(), again, err)
		}
	})
}

func FuzzParseMemory(f *testing.F) {
	for _, s := range []string{"0", "512Mi", "20%", "100%", "0%", "101%", "12.5%", "%", "1e2%", "NaN%", "-1%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := config.ParseMemory(s)
		if err != nil {
			return
		}
		if m.Share < 0 || m.Share > 1 || (m.Share > 0 && m.Bytes != 0) {
			t.Fatalf("ParseMemory(%q) = %+v", s, m)
		}
		if again, err := config.ParseMemory(m.String()); err != nil || again != m {
			t.Errorf("ParseMemory(%q) = %+v, but its String() %q parses to %+v, %v", s, m, m.String(), again, err)
		}
	})
}

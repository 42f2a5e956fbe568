package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Listener is one entry of NARWHAL_LISTEN.
type Listener struct {
	Name    string // listen0, listen1, … unless named
	Network string // tcp, tcp4, tcp6 or unix
	Address string // host:port, or a path for unix
}

func (l Listener) String() string {
	addr := l.Network + "://" + l.Address
	if l.Network == "unix" {
		addr = "unix://" + l.Address
	}
	return l.Name + "=" + addr
}

// Port is the TCP port of the listener, or 0 for a unix socket.
func (l Listener) Port() int {
	if l.Network == "unix" {
		return 0
	}
	_, p, _ := net.SplitHostPort(l.Address)
	n, _ := strconv.Atoi(p)
	return n
}

// Listeners is NARWHAL_LISTEN: a comma-separated list of [name=]address.
type Listeners []Listener

const listenForms = "want a comma-separated list of [name=]address, where address is :8080, 127.0.0.1:8080, [::]:8080, tcp://…, tcp4://…, tcp6://… or unix:///path"

// ParseListeners reads NARWHAL_LISTEN. Names must be unique and usable in LISTEN_FDNAMES
// (letters, digits, '-', '_', '.'), and so must the addresses.
func ParseListeners(s string) (Listeners, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ls Listeners
	names := map[string]bool{}
	bound := map[string]string{} // socketKey → the item that binds it
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		l, err := parseListener(item, i)
		if err != nil {
			return nil, fmt.Errorf("%q: %w; %s", item, err, listenForms)
		}
		if names[l.Name] {
			return nil, fmt.Errorf("listener name %q is used twice (an unnamed listener is named listenN after its position); %s", l.Name, listenForms)
		}
		key := socketKey(l)
		if prev, ok := bound[key]; ok {
			return nil, fmt.Errorf("%q and %q are the same address, listed twice; %s", prev, item, listenForms)
		}
		bound[key] = item
		names[l.Name] = true
		ls = append(ls, l)
	}
	return ls, nil
}

func parseListener(item string, i int) (Listener, error) {
	l := Listener{Name: "listen" + strconv.Itoa(i)}
	// A name comes before '=' and cannot contain ':' or '/', which every address has.
	if name, addr, ok := strings.Cut(item, "="); ok && !strings.ContainsAny(name, ":/[") {
		if !validName(name) {
			return l, fmt.Errorf("listener name %q may hold only letters, digits, '-', '_' and '.'", name)
		}
		l.Name, item = name, addr
	}
	scheme, rest, hasScheme := strings.Cut(item, "://")
	if !hasScheme {
		scheme, rest = "tcp", item
	}
	switch scheme {
	case "unix":
		if !strings.HasPrefix(rest, "/") && !strings.HasPrefix(rest, "@") {
			return l, fmt.Errorf("a unix socket needs an absolute path or @abstract name")
		}
		if len(rest) > maxUnixAddr {
			return l, fmt.Errorf("unix socket path longer than %d bytes", maxUnixAddr)
		}
		l.Network, l.Address = "unix", rest
		return l, nil
	case "tcp", "tcp4", "tcp6":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return l, fmt.Errorf("not host:port")
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n < 1 {
			return l, fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
		ip := net.ParseIP(host)
		if host != "" && ip == nil && host != "localhost" {
			return l, fmt.Errorf("host %q is not an IP address", host)
		}
		// As Go binds them: tcp4's :: is 0.0.0.0, and an IPv4-mapped address is IPv4.
		if scheme == "tcp4" && ip != nil && ip.To4() == nil && !ip.IsUnspecified() {
			return l, fmt.Errorf("tcp4 takes an IPv4 address, and %s is not one: use tcp6:// or tcp://", host)
		}
		if scheme == "tcp6" && ip.To4() != nil {
			return l, fmt.Errorf("tcp6 takes an IPv6 address, and %s is not one: use tcp4:// or tcp://", host)
		}
		n, _ := strconv.Atoi(port)
		l.Network, l.Address = scheme, net.JoinHostPort(host, strconv.Itoa(n)) // :08080 is :8080
		return l, nil
	default:
		return l, fmt.Errorf("unknown scheme %q", scheme)
	}
}

// maxUnixAddr is the longest unix socket address narwhal accepts: sun_path holds 108 bytes and
// a path needs its terminating NUL (an abstract @name could hold one byte more; one limit for
// both is simpler to state).
const maxUnixAddr = 107

// socketKey names the socket l binds, so that one socket written two ways is caught here rather
// than by the second bind: Go binds tcp's wildcard (:80, 0.0.0.0:80, [::]:80) as one dual-stack
// socket, and an IPv4-mapped address as IPv4.
func socketKey(l Listener) string {
	if l.Network == "unix" {
		if strings.HasPrefix(l.Address, "@") {
			return "unix " + l.Address
		}
		return "unix " + filepath.Clean(l.Address)
	}
	host, port, _ := net.SplitHostPort(l.Address)
	ip := net.ParseIP(host)
	switch {
	case host == "" || ip.IsUnspecified():
		return l.Network + " *:" + port
	case ip == nil: // localhost: what it resolves to is the machine's business
		return l.Network + " " + l.Address
	case ip.To4() != nil:
		return "ipv4 " + net.JoinHostPort(ip.To4().String(), port)
	}
	return "ipv6 " + net.JoinHostPort(ip.String(), port)
}

func validName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, r := range s {
		ok := r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}

// FirstTCP is the first TCP listener, whose port workers get as PORT, or nil.
func (ls Listeners) FirstTCP() *Listener {
	for i := range ls {
		if ls[i].Network != "unix" {
			return &ls[i]
		}
	}
	return nil
}

func (ls *Listeners) Decode(v string) error {
	p, err := ParseListeners(v)
	*ls = p
	return err
}

func (ls Listeners) String() string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.String()
	}
	return strings.Join(parts, ",")
}

// Command is a command line split as a POSIX shell would split it, without running a shell:
// single quotes, double quotes (with \" \\ \$ \` escapes) and backslashes; no expansion.
type Command []string

func SplitCommand(s string) (Command, error) {
	var (
		args    Command
		cur     strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			if quote == '"' && !strings.ContainsRune("\"\\$`\n", r) {
				cur.WriteRune('\\')
			}
			if r != '\n' {
				cur.WriteRune(r)
				inWord = true
			}
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\\' && quote != '\'':
			escaped = true // a word starts only if the escaped rune is kept (not a line break)
		case quote == '"':
			if r == '"' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("unterminated quote or trailing backslash; want a command line such as: /app/migrate --to 'latest'")
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

func (c *Command) Decode(v string) error {
	p, err := SplitCommand(v)
	*c = p
	return err
}

func (c Command) String() string {
	quoted := make([]string, len(c))
	for i, a := range c {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		quoted[i] = a
	}
	return strings.Join(quoted, " ")
}

package config_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/narwhal-init/narwhal/config"
)

func TestParseListeners(t *testing.T) {
	t.Parallel()
	type L = config.Listener
	path107 := "/" + strings.Repeat("s", 106)
	good := []struct {
		in   string
		want config.Listeners
	}{
		{"", nil},
		{"   ", nil},
		{":8080", config.Listeners{{"listen0", "tcp", ":8080"}}},
		{"127.0.0.1:8080", config.Listeners{{"listen0", "tcp", "127.0.0.1:8080"}}},
		{"[::]:8080", config.Listeners{{"listen0", "tcp", "[::]:8080"}}},
		{"[::1]:1", config.Listeners{{"listen0", "tcp", "[::1]:1"}}},
		{"localhost:65535", config.Listeners{{"listen0", "tcp", "localhost:65535"}}},
		{"tcp://:8080", config.Listeners{{"listen0", "tcp", ":8080"}}},
		{"tcp4://0.0.0.0:8080", config.Listeners{{"listen0", "tcp4", "0.0.0.0:8080"}}},
		{"tcp4://:8080", config.Listeners{{"listen0", "tcp4", ":8080"}}},
		{"tcp6://[::]:8080", config.Listeners{{"listen0", "tcp6", "[::]:8080"}}},
		{"tcp6://[::1]:8080", config.Listeners{{"listen0", "tcp6", "[::1]:8080"}}},
		{"unix:///run/app.sock", config.Listeners{{"listen0", "unix", "/run/app.sock"}}},
		{"unix://@narwhal-app", config.Listeners{{"listen0", "unix", "@narwhal-app"}}},
		{"unix://" + path107, config.Listeners{{"listen0", "unix", path107}}},
		{"unix:///tmp/a=b.sock", config.Listeners{{"listen0", "unix", "/tmp/a=b.sock"}}},
		// Go binds these as IPv4: a mapped address is one, and tcp4's :: is 0.0.0.0.
		{"tcp4://[::ffff:127.0.0.1]:80", config.Listeners{{"listen0", "tcp4", "[::ffff:127.0.0.1]:80"}}},
		{"tcp4://[::]:80", config.Listeners{{"listen0", "tcp4", "[::]:80"}}},
		{"tcp6://localhost:80", config.Listeners{{"listen0", "tcp6", "localhost:80"}}},
		{"web=:8080", config.Listeners{{"web", "tcp", ":8080"}}},
		{"web=tcp6://[::]:443", config.Listeners{{"web", "tcp6", "[::]:443"}}},
		{"sock=unix:///tmp/a.sock", config.Listeners{{"sock", "unix", "/tmp/a.sock"}}},
		{"My-app_1.v2=127.0.0.1:80", config.Listeners{{"My-app_1.v2", "tcp", "127.0.0.1:80"}}},
		{":8080,:8081", config.Listeners{{"listen0", "tcp", ":8080"}, {"listen1", "tcp", ":8081"}}},
		{" :8080 , :8081 ", config.Listeners{{"listen0", "tcp", ":8080"}, {"listen1", "tcp", ":8081"}}},
		// The same port on two networks or two hosts is two sockets.
		{":8080,unix:///s,tcp4://127.0.0.1:8080", config.Listeners{
			{"listen0", "tcp", ":8080"}, {"listen1", "unix", "/s"}, {"listen2", "tcp4", "127.0.0.1:8080"},
		}},
		{"tcp4://:80,tcp6://[::]:80,[::1]:80", config.Listeners{
			{"listen0", "tcp4", ":80"}, {"listen1", "tcp6", "[::]:80"}, {"listen2", "tcp", "[::1]:80"},
		}},
		// A default name is the entry's position, so naming one entry does not rename the others.
		{"web=:8080,:8081,admin=127.0.0.1:9000", config.Listeners{
			{"web", "tcp", ":8080"}, {"listen1", "tcp", ":8081"}, {"admin", "tcp", "127.0.0.1:9000"},
		}},
	}
	for _, tc := range good {
		got, err := config.ParseListeners(tc.in)
		if err != nil {
			t.Errorf("ParseListeners(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseListeners(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}

	bad := []struct{ in, says string }{
		{":0", "port"},
		{":65536", "port"},
		{":-1", "port"},
		{":http", "port"},
		{"tcp://:", "port"},
		{"8080", "host:port"},
		{"127.0.0.1", "host:port"},
		{"[::1]", "host:port"},
		{"::1:8080", "host:port"},
		{"http://x:1", "scheme"},
		{"udp://:53", "scheme"},
		{"TCP://:80", "scheme"},
		{"unix:/tmp/a.sock", "port"},
		{"x:1", "host"},
		{"example.com:80", "host"},
		{"unix://relative.sock", "absolute"},
		{"unix://", "absolute"},
		{"unix:///" + strings.Repeat("s", 107), "107"},
		{"web=:8080,web=:8081", `"web" is used twice`},
		{":8080,:8080", "twice"},
		{":8080,tcp://:8080", "twice"},
		{"a=unix:///s,b=unix:///s", "twice"},
		// What binds the same socket, however it is written, is a configuration error, not a bind error.
		{"127.0.0.1:18601,tcp4://127.0.0.1:18601", `"127.0.0.1:18601" and "tcp4://127.0.0.1:18601" are the same address`},
		{"tcp://[::1]:80,tcp6://[0:0::1]:80", "same address"},
		{"tcp4://[::ffff:127.0.0.1]:80,127.0.0.1:80", "same address"},
		{":80,0.0.0.0:80", "same address"},    // tcp's wildcard is dual-stack [::] in Go
		{":80,tcp://[::]:80", "same address"}, // the same
		{"tcp4://:80,tcp4://0.0.0.0:80", "same address"},
		{"tcp6://:80,tcp6://[::]:80", "same address"},
		{"unix:///tmp/a.sock,unix:///tmp//a.sock", "same address"},
		{"unix:///tmp/a.sock,unix:///tmp/./a.sock", "same address"},
		{"unix://@x,unix://@x", "same address"},
		// A literal IP of the other family can never bind.
		{"tcp4://[::1]:18510", "tcp4 takes an IPv4 address, and ::1 is not one"},
		{"tcp4://[fe80::1]:80", "tcp4 takes an IPv4 address"},
		{"tcp6://127.0.0.1:18510", "tcp6 takes an IPv6 address, and 127.0.0.1 is not one"},
		{"tcp6://0.0.0.0:80", "tcp6 takes an IPv6 address"},
		{"tcp6://[::ffff:127.0.0.1]:80", "tcp6 takes an IPv6 address"},
		{"we b=:80", "name"},
		{"=:8080", "name"},
		{"web!=:80", "name"},
		{"wéb=:80", "name"},
		{":8080,", `""`},
		{",:8080", `""`},
	}
	for _, tc := range bad {
		got, err := config.ParseListeners(tc.in)
		if err == nil {
			t.Errorf("ParseListeners(%q) = %v, want an error", tc.in, got)
			continue
		}
		if got != nil {
			t.Errorf("ParseListeners(%q) returned %v along with its error", tc.in, got)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.says) {
			t.Errorf("ParseListeners(%q) error %q does not mention %q", tc.in, msg, tc.says)
		}
		if !strings.Contains(msg, "[name=]address") {
			t.Errorf("ParseListeners(%q) error %q does not show the accepted forms", tc.in, msg)
		}
	}
}

func TestListenerMethods(t *testing.T) {
	t.Parallel()
	ls, err := config.ParseListeners("sock=unix:///run/a.sock,web=[::1]:8443,:80")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{0, 8443, 80} {
		if got := ls[i].Port(); got != want {
			t.Errorf("%s: Port() = %d, want %d", ls[i].Name, got, want)
		}
	}
	if got, want := ls.String(), "sock=unix:///run/a.sock,web=tcp://[::1]:8443,listen2=tcp://:80"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if first := ls.FirstTCP(); first == nil || first.Name != "web" {
		t.Errorf("FirstTCP() = %v, want the listener named web", first)
	}
	unixOnly, err := config.ParseListeners("unix:///a,unix://@b")
	if err != nil {
		t.Fatal(err)
	}
	if first := unixOnly.FirstTCP(); first != nil {
		t.Errorf("FirstTCP() of unix sockets only = %v, want nil", first)
	}
	var none config.Listeners
	if first := none.FirstTCP(); first != nil {
		t.Errorf("FirstTCP() of no listeners = %v, want nil", first)
	}
	var d config.Listeners
	if err := d.Decode("tcp4://127.0.0.1:9"); err != nil || len(d) != 1 || d[0].Network != "tcp4" {
		t.Errorf("Decode(tcp4://127.0.0.1:9) = %v, %v", d, err)
	}
}

func TestSplitCommand(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   \t\n ", nil},
		{"/app/migrate --to latest", []string{"/app/migrate", "--to", "latest"}},
		{"  a   b\tc\nd  ", []string{"a", "b", "c", "d"}},
		{"'a b' c", []string{"a b", "c"}},
		{`"a b" c`, []string{"a b", "c"}},
		{`a"b c"d`, []string{"ab cd"}},
		{`a'b'"c"`, []string{"abc"}},
		{`''`, []string{""}},
		{`""`, []string{""}},
		{`a '' b`, []string{"a", "", "b"}},
		{`'it'\''s'`, []string{"it's"}},
		{`"it's"`, []string{"it's"}},
		{`'say "hi"'`, []string{`say "hi"`}},
		{`"say \"hi\""`, []string{`say "hi"`}},
		{`"a\\b"`, []string{`a\b`}},
		{`"\$HOME \` + "`x`" + `"`, []string{"$HOME `x`"}},
		{`"\x\n"`, []string{`\x\n`}},
		{`'\n\'`, []string{`\n\`}},
		{`a\ b`, []string{"a b"}},
		{`\'`, []string{"'"}},
		{`\"`, []string{`"`}},
		{`\\`, []string{`\`}},
		{`\x`, []string{"x"}},
		{`$HOME *.txt ~ a;b |`, []string{"$HOME", "*.txt", "~", "a;b", "|"}},
		{"a\\\nb", []string{"ab"}},
		{"\"a\\\nb\"", []string{"ab"}},
		{"'a\nb'", []string{"a\nb"}},
		{`echo "héllo wörld" 日本`, []string{"echo", "héllo wörld", "日本"}},
		{"a\rb", []string{"a\rb"}},
	}
	for _, tc := range good {
		got, err := config.SplitCommand(tc.in)
		if err != nil {
			t.Errorf("SplitCommand(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("SplitCommand(%q) = %q, want %q", tc.in, []string(got), tc.want)
		}
	}

	for _, in := range []string{`'abc`, `"abc`, `abc\`, `a 'b" c`, `"a\"`, `'it\'s'`, `a "b 'c' d`, `\`} {
		got, err := config.SplitCommand(in)
		if err == nil {
			t.Errorf("SplitCommand(%q) = %q, want an error", in, []string(got))
			continue
		}
		if got != nil {
			t.Errorf("SplitCommand(%q) returned %q along with its error", in, []string(got))
		}
		if !strings.Contains(err.Error(), "unterminated quote") {
			t.Errorf("SplitCommand(%q) error %q does not name the problem", in, err)
		}
	}
}

// A backslash before a newline joins lines, as in a shell; a multi-line YAML value such as
// "/app/migrate \<newline>  --to latest" must give the arguments a shell would give.
func TestSplitCommandLineContinuation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want []string
	}{
		{"/app/migrate \\\n  --to latest", []string{"/app/migrate", "--to", "latest"}},
		{"a \\\n", []string{"a"}},
		{"\\\na", []string{"a"}},
	}
	for _, tc := range cases {
		got, err := config.SplitCommand(tc.in)
		if err != nil {
			t.Errorf("SplitCommand(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("SplitCommand(%q) = %q, want %q", tc.in, []string(got), tc.want)
		}
	}
}

func TestCommandString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args config.Command
		want string
	}{
		{config.Command{"/app/migrate", "--to", "latest"}, "/app/migrate --to latest"},
		{config.Command{"a b"}, "'a b'"},
		{config.Command{""}, "''"},
		{config.Command{"it's"}, `'it'\''s'`},
		{config.Command{"$HOME"}, "'$HOME'"},
		{config.Command{`C:\dir`}, `'C:\dir'`},
		{config.Command{"tab\there"}, "'tab\there'"},
		{nil, ""},
	}
	for _, tc := range cases {
		if got := tc.args.String(); got != tc.want {
			t.Errorf("%q.String() = %q, want %q", []string(tc.args), got, tc.want)
		}
	}

	tricky := config.Command{"", " ", "'", `"`, `\`, "$x", "`id`", "a'b\"c\\d", "new\nline", "héllo", "--flag=a b"}
	back, err := config.SplitCommand(tricky.String())
	if err != nil {
		t.Fatalf("SplitCommand(%q): %v", tricky.String(), err)
	}
	if !slices.Equal(back, tricky) {
		t.Errorf("round trip through %q = %q, want %q", tricky.String(), []string(back), []string(tricky))
	}

	var d config.Command
	if err := d.Decode("sh -c 'exit 3'"); err != nil || !slices.Equal(d, config.Command{"sh", "-c", "exit 3"}) {
		t.Errorf("Decode(sh -c 'exit 3') = %q, %v", []string(d), err)
	}
}

// Package config reads every NARWHAL_* variable into one Config and validates it as a whole
// before anything starts. The struct's tags are the only description of the variables: Load,
// the --help table and --check-config are all generated from them, so they cannot drift.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Prefix of every variable narwhal reads.
const Prefix = "NARWHAL"

// Config is narwhal's whole configuration. Tags: env (the name after NARWHAL_; envconfig derives
// the same from the field name with split_words, and a test holds them equal; envconfig's own
// tag is not used because it also reads the name without the prefix, such as LISTEN),
// default (applied when unset), doc (the default as shown when it depends on the mode),
// type (how --help names the accepted values), choices (for Choice fields), desc.
type Config struct {
	Workers        Workers   `env:"WORKERS" split_words:"true" default:"auto" type:"count|auto|MIN-MAX" desc:"pool size: a number of workers, auto for the container's CPU limit, or a range MIN-MAX (either may be auto) that narwhal sizes from the accept queue (setting it selects pool mode)"`
	ScaleUpAfter   Duration  `env:"SCALE_UP_AFTER" split_words:"true" default:"1s" type:"duration" desc:"with a range, add a worker when connections waited in an accept queue for most of this long"`
	ScaleDownAfter Duration  `env:"SCALE_DOWN_AFTER" split_words:"true" default:"60s" type:"duration" desc:"with a range, remove a worker when for this long no connection waited and the workers' CPU would have fitted in one fewer"`
	CPUs           CPUs      `env:"CPUS" default:"0" type:"cpus" desc:"with NARWHAL_WORKERS=auto and no CPU limit, the container's CPUs: 2, 1.5 or 1500m, rounded up (the Helm chart sets it from the CPU request); 0 is none"`
	Listen         Listeners `env:"LISTEN" split_words:"true" type:"list" desc:"listeners, comma-separated [name=]address: :8080, 127.0.0.1:8080, [::]:8080, tcp4://…, tcp6://…, unix:///path (setting it selects pool mode)"`
	Backlog        Int       `env:"BACKLOG" split_words:"true" default:"1024" type:"count" desc:"listen backlog of each listener"`
	SocketMode     Choice    `env:"SOCKET_MODE" split_words:"true" default:"inherit" choices:"inherit|balanced|reuseport" desc:"inherit: narwhal binds and passes fds 3… (LISTEN_FDS); balanced: as inherit, one SO_REUSEPORT socket per worker slot; reuseport: workers bind with SO_REUSEPORT"`
	Ready          Choice    `env:"READY" split_words:"true" default:"auto" choices:"auto|notify|delay" desc:"when a worker counts as ready: auto (READY=1 or seen accepting), notify (READY=1 only), delay (NARWHAL_READY_DELAY after start)"`
	ReadyDelay     Duration  `env:"READY_DELAY" split_words:"true" default:"1s" type:"duration" desc:"with NARWHAL_READY=delay, time from start to ready"`
	ReadyTimeout   Duration  `env:"READY_TIMEOUT" split_words:"true" default:"60s" type:"duration" desc:"a worker not ready by then is stopped and counts as a failed start"`
	RolloutSurge   Int       `env:"ROLLOUT_SURGE" split_words:"true" default:"1" type:"count" desc:"extra workers a rolling restart may start at once"`
	RolloutCanary  Duration  `env:"ROLLOUT_CANARY" split_words:"true" default:"0" type:"duration" desc:"a rolling restart first starts one new worker and, once it is ready, watches it this long beside the old ones; if it exits, misses its watchdog or goes over NARWHAL_MAX_MEMORY, the rollout aborts; 0 is off"`
	Watch          Paths     `env:"WATCH" split_words:"true" type:"list" desc:"files and directories (a mounted ConfigMap, Secret or certificate), comma-separated: a change to a file's content under them starts a rolling restart"`
	WatchDelay     Duration  `env:"WATCH_DELAY" split_words:"true" default:"2s" type:"duration" desc:"with NARWHAL_WATCH, restart once no further change has come for this long"`
	WorkerDir      string    `env:"WORKER_DIR" split_words:"true" type:"path" desc:"working directory of workers, symlinks resolved at each spawn (current -> releases/N)"`
	WorkerUser     string    `env:"WORKER_USER" split_words:"true" type:"name|uid" desc:"user workers run as"`
	WorkerGroup    string    `env:"WORKER_GROUP" split_words:"true" type:"name|gid" desc:"group workers run as"`
	PreStart       Command   `env:"PRE_START" split_words:"true" type:"command" desc:"command run to completion before the first worker (split like a shell, no shell); non-zero exit stops narwhal with its code"`
	WorkerOutput   Choice    `env:"WORKER_OUTPUT" split_words:"true" default:"inherit" choices:"inherit|json|text" desc:"workers' stdout and stderr: inherit (narwhal's own), or read by narwhal and written one whole line at a time, labelled with slot, generation and PID, as json or text"`

	RestartDelay    Duration `env:"RESTART_DELAY" split_words:"true" default:"100ms" type:"duration" desc:"first delay before restarting a crashed worker; doubles per crash"`
	RestartDelayMax Duration `env:"RESTART_DELAY_MAX" split_words:"true" default:"30s" type:"duration" desc:"longest delay between restarts of a crashing worker"`
	WorkerTimeout   Duration `env:"WORKER_TIMEOUT" split_words:"true" default:"0" type:"duration" desc:"watchdog: a ready worker silent (no WATCHDOG=1) this long gets SIGABRT, then SIGKILL 2s later; 0 is off"`
	MaxMemory       Memory   `env:"MAX_MEMORY" split_words:"true" default:"0" type:"size|share" desc:"replace a worker whose proportional memory (PSS, with descendants) exceeds this, e.g. 512Mi, or a share of the container's memory limit such as 20%; 0 is off"`
	MemoryBudget    Share    `env:"MEMORY_BUDGET" split_words:"true" default:"0" type:"share" desc:"when the container's working set goes over this share of its memory limit (e.g. 90%), replace the worker holding the most memory before the OOM killer acts; 0 is off"`
	MemoryMerge     bool     `env:"MEMORY_MERGE" split_words:"true" default:"false" type:"bool" desc:"mark every worker for kernel same-page merging (PR_SET_MEMORY_MERGE, Linux 6.4+), so the node's ksmd merges identical pages across workers of any language; off by default: merging is a timing side channel between every process the host marks mergeable"`
	Preload         bool     `env:"PRELOAD" split_words:"true" default:"false" type:"bool" desc:"start COMMAND once per generation as a template that loads the app and calls narwhal's fork point (contrib/python/narwhal_fork.py, contrib/ruby/narwhal_fork.rb); workers are forked from it and share its memory"`
	MaxLifetime     Duration `env:"MAX_LIFETIME" split_words:"true" default:"0" type:"duration" desc:"replace a worker after this long, plus up to 10% random, e.g. 6h; 0 is off"`
	MinReady        Int      `env:"MIN_READY" split_words:"true" default:"1" type:"count" desc:"ready workers needed for /readyz to answer 200"`

	StopSignal    Signal        `env:"STOP_SIGNAL" split_words:"true" default:"SIGTERM" type:"signal" desc:"signal that asks a worker (or a left-over process) to stop"`
	StopTimeout   Duration      `env:"STOP_TIMEOUT" split_words:"true" default:"25s" type:"duration" desc:"time to stop gracefully before SIGKILL"`
	DrainDelay    Duration      `env:"DRAIN_DELAY" split_words:"true" default:"5s" type:"duration" desc:"how long narwhal --drain waits after turning unready"`
	SignalGroup   bool          `env:"SIGNAL_GROUP" split_words:"true" default:"false" type:"bool" desc:"init mode: forward signals to the child's whole process group"`
	SignalRewrite SignalRewrite `env:"SIGNAL_REWRITE" split_words:"true" type:"FROM:TO,…" desc:"rewrite signals before forwarding, e.g. TERM:QUIT,USR1:0 (0 drops)"`
	ExitRemap     ExitRemap     `env:"EXIT_REMAP" split_words:"true" type:"FROM:TO,…" desc:"report child exit codes as others, e.g. 143:0"`

	MetricsAddr   Address `env:"METRICS_ADDR" split_words:"true" doc:":9090 (pool), none (init)" type:"host:port|off" desc:"address of /metrics, /livez, /healthz, /readyz; off disables"`
	ControlSocket string  `env:"CONTROL_SOCKET" split_words:"true" doc:"@narwhal-<pidns>-<mntns>" type:"path|@name" desc:"control socket for --status, --drain, --healthcheck"`
	LogFormat     Choice  `env:"LOG_FORMAT" split_words:"true" default:"auto" choices:"auto|text|json" desc:"auto: coloured text on a TTY, JSON otherwise"`
	LogLevel      Choice  `env:"LOG_LEVEL" split_words:"true" default:"info" choices:"debug|info|warn|error" desc:"least severe level logged"`

	// Pool is true when NARWHAL_WORKERS or NARWHAL_LISTEN is set.
	Pool bool `ignored:"true"`
	// Credential is NARWHAL_WORKER_USER and NARWHAL_WORKER_GROUP resolved (names looked up
	// once, here); nil when neither is set: workers run as narwhal does.
	Credential *syscall.Credential `ignored:"true"`
}

// Error is an invalid environment: narwhal exits 78 (EX_CONFIG) and starts nothing.
type Error struct {
	Variable, Value, Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s=%q: %s", e.Variable, e.Value, e.Reason)
}

// Load reads and validates the environment of this process.
func Load() (*Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{Variable: pe.KeyName, Value: pe.Value, Reason: reason(pe.Err)}
		}
		return nil, err
	}
	_, workersSet := os.LookupEnv(Prefix + "_WORKERS")
	c.Pool = workersSet || len(c.Listen) > 0
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// reason turns the errors of strconv, which envconfig returns for plain ints and bools,
// into what a user can act on.
func reason(err error) string {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		if ne.Func == "ParseBool" {
			return "want true or false"
		}
		return "want a whole number"
	}
	return err.Error()
}

func (c *Config) validate() error {
	for _, f := range fields(c) {
		if choices := f.tag.Get("choices"); choices != "" {
			v := strings.ToLower(strings.TrimSpace(f.value.String()))
			if !slices.Contains(strings.Split(choices, "|"), v) {
				return &Error{f.key, f.value.String(), "want one of " + strings.ReplaceAll(choices, "|", ", ")}
			}
			f.value.SetString(v)
		}
	}
	// bad quotes the value as the user wrote it, not as it was decoded.
	bad := func(name string, v any, reason string) error {
		value, ok := os.LookupEnv(Prefix + "_" + name)
		if !ok {
			value = fmt.Sprint(v)
		}
		return &Error{Prefix + "_" + name, value, reason}
	}
	switch {
	case c.Backlog < 1 || c.Backlog > 65535:
		return bad("BACKLOG", c.Backlog, "want a whole number from 1 to 65535")
	case c.RolloutSurge < 1:
		return bad("ROLLOUT_SURGE", c.RolloutSurge, "want a whole number ≥ 1")
	case c.MinReady < 0:
		return bad("MIN_READY", c.MinReady, "want a whole number ≥ 0")
	case c.ScaleUpAfter == 0:
		return bad("SCALE_UP_AFTER", c.ScaleUpAfter, "want a duration greater than 0")
	case c.ScaleDownAfter == 0:
		return bad("SCALE_DOWN_AFTER", c.ScaleDownAfter, "want a duration greater than 0")
	case c.ReadyTimeout == 0:
		return bad("READY_TIMEOUT", c.ReadyTimeout, "want a duration greater than 0")
	case c.Ready == "delay" && c.ReadyDelay >= c.ReadyTimeout:
		return bad("READY_DELAY", c.ReadyDelay, fmt.Sprintf("with NARWHAL_READY=delay, want less than NARWHAL_READY_TIMEOUT (%s): "+
			"every worker would time out before it is ready", c.ReadyTimeout))
	case c.RestartDelay == 0:
		return bad("RESTART_DELAY", c.RestartDelay, "want a duration greater than 0 (a crash loop must never spin)")
	case c.RestartDelayMax < c.RestartDelay:
		return bad("RESTART_DELAY_MAX", c.RestartDelayMax, fmt.Sprintf("want at least NARWHAL_RESTART_DELAY (%s)", c.RestartDelay))
	case c.SocketMode == "reuseport" && len(c.Listen) > 0 && c.Listen.FirstTCP() == nil:
		return bad("LISTEN", c.Listen, "NARWHAL_SOCKET_MODE=reuseport needs at least one TCP listener")
	}
	for _, path := range c.Watch {
		if _, err := os.Stat(path); err != nil {
			return bad("WATCH", c.Watch, fmt.Sprintf("%s: %v; want existing files or directories", path, errors.Unwrap(err)))
		}
	}
	if c.Workers.Max > 0 { // an auto MAX is the machine's, which the pool checks (fit.Size)
		if err := c.CheckMinReady(c.Workers.Max, ""); err != nil {
			return err
		}
	}
	// Resolved again at each spawn, for current -> releases/N; missing at start, it is a mistake
	// that would only crash-loop every worker. Init mode does not use it.
	if c.Pool && c.WorkerDir != "" {
		const want = "want an existing directory (symlinks are followed)"
		if fi, err := os.Stat(c.WorkerDir); err != nil {
			return bad("WORKER_DIR", c.WorkerDir, fmt.Sprintf("%v; %s", errors.Unwrap(err), want))
		} else if !fi.IsDir() {
			return bad("WORKER_DIR", c.WorkerDir, "not a directory; "+want)
		}
	}
	if err := checkControlSocket(c.ControlSocket); err != nil {
		return err
	}
	if err := c.checkMetricsAddr(); err != nil {
		return err
	}
	var err error
	c.Credential, err = credential(c.WorkerUser, c.WorkerGroup)
	return err
}

// ControlSocket is NARWHAL_CONTROL_SOCKET alone, for --status, --drain and --healthcheck: a
// client must reach the running narwhal whatever else the environment holds at that moment (a
// release directory or a watched file missing during a deploy would fail a whole Load, and a
// preStop --drain with it).
func ControlSocket() (string, error) {
	v := os.Getenv(Prefix + "_CONTROL_SOCKET")
	return v, checkControlSocket(v)
}

func checkControlSocket(v string) error {
	bad := func(reason string) error { return &Error{Prefix + "_CONTROL_SOCKET", v, reason} }
	if strings.HasPrefix(v, "@") && len(v) < 2 {
		return bad("want a path or @name")
	}
	if len(v) > maxUnixAddr {
		return bad(fmt.Sprintf("%d bytes; want a path or @name of at most %d bytes, what a unix socket's address holds",
			len(v), maxUnixAddr))
	}
	return nil
}

// CheckMinReady rejects a NARWHAL_MIN_READY above most, the most workers the pool can reach
// (why says what decided an auto bound): /readyz would answer 503 for ever.
func (c *Config) CheckMinReady(most int, why string) error {
	if int(c.MinReady) <= most {
		return nil
	}
	if why != "" {
		why = " here (" + why + ")"
	}
	return &Error{Prefix + "_MIN_READY", strconv.Itoa(int(c.MinReady)), fmt.Sprintf(
		"want at most %d, the most workers NARWHAL_WORKERS=%s can reach%s; with more, /readyz never answers 200", most, c.Workers, why)}
}

// checkMetricsAddr rejects a metrics address whose port a listener already uses.
func (c *Config) checkMetricsAddr() error {
	addr := c.EffectiveMetricsAddr()
	if addr == "" {
		return nil
	}
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	for _, l := range c.Listen {
		if l.Port() != 0 && l.Port() == port {
			return &Error{Prefix + "_METRICS_ADDR", addr,
				fmt.Sprintf("port %d is taken by listener %s; choose another port or off", port, l.Name)}
		}
	}
	return nil
}

// EffectiveMetricsAddr is the address to serve metrics on, or "" for none:
// :9090 by default in pool mode, nothing by default in init mode (a drop-in for tini).
func (c *Config) EffectiveMetricsAddr() string {
	switch {
	case c.MetricsAddr == "off":
		return ""
	case c.MetricsAddr == "" && c.Pool:
		return ":9090"
	}
	return string(c.MetricsAddr)
}

// credential resolves NARWHAL_WORKER_USER and NARWHAL_WORKER_GROUP: a number needs no
// /etc/passwd; a name must be one the image knows. A user without a group runs with the user's
// primary group (a number: gid = uid), a group without a user as narwhal's own uid.
func credential(usr, group string) (*syscall.Credential, error) {
	if usr == "" && group == "" {
		return nil, nil
	}
	c := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Groups: []uint32{}}
	if usr != "" {
		uid, gid, err := identity(usr, "WORKER_USER", func(name string) (string, string, error) {
			u, err := user.Lookup(name)
			if err != nil {
				return "", "", err
			}
			return u.Uid, u.Gid, nil
		})
		if err != nil {
			return nil, err
		}
		c.Uid, c.Gid = uid, gid
	}
	if group != "" {
		gid, _, err := identity(group, "WORKER_GROUP", func(name string) (string, string, error) {
			g, err := user.LookupGroup(name)
			if err != nil {
				return "", "", err
			}
			return g.Gid, g.Gid, nil
		})
		if err != nil {
			return nil, err
		}
		c.Gid = gid
	}
	return c, nil
}

// identity resolves v, a number or a name that lookup knows, to an ID and its primary group's
// (for a number, the number twice).
func identity(v, name string, lookup func(string) (id, primary string, err error)) (uint32, uint32, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 || n > 1<<31-2 {
			return 0, 0, &Error{Prefix + "_" + name, v, "want a name or a number from 0 to 2147483646"}
		}
		return uint32(n), uint32(n), nil
	}
	id, primary, err := lookup(v)
	if err != nil {
		return 0, 0, &Error{Prefix + "_" + name, v, "unknown name (" + err.Error() + "); want a name the image knows, or a number"}
	}
	a, _ := strconv.ParseUint(id, 10, 32)
	b, _ := strconv.ParseUint(primary, 10, 32)
	return uint32(a), uint32(b), nil
}

// Mode is "pool" or "init".
func (c *Config) Mode() string {
	if c.Pool {
		return "pool"
	}
	return "init"
}

// field is one variable: its tags and, when read from a Config, its value.
type field struct {
	key   string
	tag   reflect.StructTag
	value reflect.Value
}

// fields lists the variables of c in declaration order.
func fields(c *Config) []field {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name := sf.Tag.Get("env")
		if name == "" {
			continue
		}
		fs = append(fs, field{key: Prefix + "_" + name, tag: sf.Tag, value: v.Field(i)})
	}
	return fs
}

// Variables lists the names of every variable narwhal reads.
func Variables() []string {
	var names []string
	for _, f := range fields(&Config{}) {
		names = append(names, f.key)
	}
	return names
}

// WriteHelp writes the table of variables: name, accepted values, default, meaning.
func WriteHelp(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 1, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tTYPE\tDEFAULT\tMEANING")
	for _, f := range fields(&Config{}) {
		typ := f.tag.Get("type")
		if typ == "" {
			typ = f.tag.Get("choices")
		}
		def := f.tag.Get("default")
		if doc := f.tag.Get("doc"); doc != "" {
			def = doc
		}
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.key, typ, def, f.tag.Get("desc"))
	}
	return tw.Flush()
}

// WriteEffective writes the settings narwhal would run with, one VARIABLE=value a line.
func (c *Config) WriteEffective(w io.Writer) error {
	fmt.Fprintf(w, "mode=%s\n", c.Mode())
	for _, f := range fields(c) {
		v := fmt.Sprint(f.value.Interface())
		switch f.key {
		case Prefix + "_METRICS_ADDR":
			if v = c.EffectiveMetricsAddr(); v == "" {
				v = "off"
			}
		}
		if _, err := fmt.Fprintf(w, "%s=%s\n", f.key, v); err != nil {
			return err
		}
	}
	return nil
}

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func sortedJoin(parts []string) string {
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

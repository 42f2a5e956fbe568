// Command server is narwhal's example worker in Go: an HTTP server on the listener narwhal
// passes down (systemd socket activation: LISTEN_PID, LISTEN_FDS, fd 3), or on $PORT when run
// alone. It answers with its PID, NARWHAL_WORKER_ID and NARWHAL_GENERATION, has /slow?ms=N for
// drain tests, and on SIGTERM stops accepting and answers every request it has accepted
// before it exits.
//
// BOOT_DELAY (a duration) makes it take that long to start, like a real app loading its code.
// NOTIFY=socket or NOTIFY=fd sends READY=1 once it listens, over NOTIFY_SOCKET or over
// NARWHAL_NOTIFY_FD; without it, narwhal sees it accepting and needs no message.
//
// With WATCHDOG_USEC set (NARWHAL_WORKER_TIMEOUT) it sends WATCHDOG=1 every half period, as
// systemd services do. For tests: HANG_AFTER stops those pings after a while (a hung worker),
// TRIGGER_AFTER sends WATCHDOG=trigger once (asking for its own replacement), CRASH_AFTER exits
// with code 1 that long after it begins to serve (a release that breaks under traffic), and
// /grow?mb=N holds N more MiB of resident memory.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// keepAliveGrace is how long a stopping worker keeps idle keep-alive connections open for a
// last request answered with "Connection: close".
const keepAliveGrace = 500 * time.Millisecond

func main() {
	if code, err := strconv.Atoi(os.Getenv("EXIT_WITH")); err == nil {
		os.Exit(code) // a test knob: a child that ends with a known code, in an image without sh
	}
	if d, err := time.ParseDuration(os.Getenv("BOOT_DELAY")); err == nil {
		time.Sleep(d)
	}
	ln, err := listener()
	if err != nil {
		log.Fatal(err)
	}
	// Every connection accepted is counted until it closes. The hook runs for StateNew inside
	// Serve's accept loop, so once Serve returns no connection can be missed.
	var conns sync.WaitGroup
	var draining atomic.Bool
	handler := routes()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			handler.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				conns.Done()
			}
		},
	}
	if err := notifyReady(os.Getenv("NOTIFY")); err != nil {
		log.Fatal(err)
	}
	go watchdog()
	if d, err := time.ParseDuration(os.Getenv("CRASH_AFTER")); err == nil {
		time.AfterFunc(d, func() { log.Fatalf("crashing %s after serving, as CRASH_AFTER asks", d) })
	}

	// On SIGTERM: stop accepting, answer every request already accepted, then exit. Not
	// srv.Shutdown: it closes a connection whose request it reads after shutdown began without
	// answering it, which drops requests when the listener is shared and others keep serving.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ln.Close() // stop accepting; connections queued on the shared socket go to other workers
		// Answer the next request on each kept-alive connection with "Connection: close", so
		// the client knows to reconnect; only then close the connections still idle. Closing an
		// idle connection at once races a client that is sending on it, and clients that do not
		// retry (wrk, some proxies) would count a failed request.
		draining.Store(true)
		time.Sleep(keepAliveGrace)
		srv.SetKeepAlivesEnabled(false)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Fatal(err)
	}
	drained := make(chan struct{})
	go func() { conns.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(30 * time.Second):
	}
}

// listener returns the first socket passed by socket activation, or listens on $PORT (8080).
func listener() (net.Listener, error) {
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		if n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS")); n >= 1 {
			f := os.NewFile(3, "listen0")
			defer f.Close() // FileListener holds its own duplicate
			return net.FileListener(f)
		}
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	// SO_REUSEPORT lets every worker bind the port itself (NARWHAL_SOCKET_MODE=reuseport).
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
		})
		return err
	}}
	return lc.Listen(context.Background(), "tcp", ":"+port)
}

// watchdog sends WATCHDOG=1 every half WATCHDOG_USEC until HANG_AFTER, and WATCHDOG=trigger
// once after TRIGGER_AFTER.
func watchdog() {
	var ping <-chan time.Time
	if usec, err := strconv.Atoi(os.Getenv("WATCHDOG_USEC")); err == nil && usec > 0 {
		t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
		defer t.Stop()
		ping = t.C
	}
	var hang, trigger <-chan time.Time
	if d, err := time.ParseDuration(os.Getenv("HANG_AFTER")); err == nil {
		hang = time.After(d)
	}
	if d, err := time.ParseDuration(os.Getenv("TRIGGER_AFTER")); err == nil {
		trigger = time.After(d)
	}
	for {
		select {
		case <-ping:
			sdNotify("WATCHDOG=1")
		case <-hang:
			ping, hang = nil, nil
		case <-trigger:
			sdNotify("WATCHDOG=trigger")
			trigger = nil
		}
	}
}

func sdNotify(msg string) error {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: os.Getenv("NOTIFY_SOCKET"), Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(msg))
	return err
}

// notifyReady tells narwhal the worker is ready, the sd_notify way or through the pipe.
func notifyReady(how string) error {
	switch how {
	case "socket":
		return sdNotify("READY=1\nSTATUS=serving")
	case "fd":
		fd, err := strconv.Atoi(os.Getenv("NARWHAL_NOTIFY_FD"))
		if err != nil {
			return err
		}
		_, err = os.NewFile(uintptr(fd), "notify").Write([]byte("READY=1\n"))
		return err
	}
	return nil
}

func routes() *http.ServeMux {
	mux := http.NewServeMux()
	hello := map[string]any{
		"pid":        os.Getpid(),
		"worker_id":  os.Getenv("NARWHAL_WORKER_ID"),
		"generation": os.Getenv("NARWHAL_GENERATION"),
		"listen_pid": os.Getenv("LISTEN_PID"),
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(hello)
	})
	// /slow sends its headers at once, so a client knows a worker holds the request, then
	// takes ms milliseconds to send the body.
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "slept %dms in pid %d\n", ms, os.Getpid())
	})
	var held [][]byte
	var mu sync.Mutex
	mux.HandleFunc("/grow", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		b := make([]byte, mb<<20)
		for i := range b { // touch every byte so it counts as resident
			b[i] = 1
		}
		mu.Lock()
		held = append(held, b)
		mu.Unlock()
		fmt.Fprintf(w, "holding %d more MiB in pid %d\n", mb, os.Getpid())
	})
	return mux
}

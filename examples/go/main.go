// Command server is narwhal's example worker in Go: an HTTP server on the listener narwhal
// passes down (systemd socket activation: LISTEN_PID, LISTEN_FDS, fd 3), or on $PORT when run
// alone. It answers with its PID, NARWHAL_WORKER_ID and NARWHAL_GENERATION, has /slow?ms=N for
// drain tests, and on SIGTERM finishes the requests in flight before it exits.
//
// BOOT_DELAY (a duration) makes it take that long to start, like a real app loading its code.
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
	"syscall"
	"time"
)

func main() {
	if d, err := time.ParseDuration(os.Getenv("BOOT_DELAY")); err == nil {
		time.Sleep(d)
	}
	ln, err := listener()
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: routes(), ReadHeaderTimeout: 10 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // stops accepting, waits for requests in flight
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
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
	return net.Listen("tcp", ":"+port)
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
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "slept %dms in pid %d\n", ms, os.Getpid())
	})
	return mux
}

package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/narwhal-init/narwhal/internal/status"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LiveTimeout is how long /livez waits for the supervising loop to answer before it says 503.
const LiveTimeout = time.Second

// maxInFlight bounds concurrent requests, so a scrape storm cannot pile up goroutines.
const maxInFlight = 16

// Handler serves /metrics, /livez, /healthz and /readyz.
func Handler(reg *prometheus.Registry, b *status.Board, liveTimeout time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	live := func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), liveTimeout)
		defer cancel()
		if !b.Ping(ctx) {
			http.Error(w, fmt.Sprintf("supervision loop did not answer within %s", liveTimeout), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
	mux.HandleFunc("GET /livez", live)
	mux.HandleFunc("GET /healthz", live)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, reason := b.Ready()
		if _, verbose := r.URL.Query()["verbose"]; verbose {
			writeChecks(w, b, ok)
			return
		}
		if !ok {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return limit(mux, maxInFlight)
}

// writeChecks lists each readiness check, as Kubernetes components do for ?verbose.
func writeChecks(w http.ResponseWriter, b *status.Board, ok bool) {
	s := b.Snapshot()
	checks := []struct {
		name   string
		pass   bool
		detail string
	}{
		{"started", s.Mode != "", "narwhal has started its workers"},
		{"workers", s.ReadyCount >= b.MinReady, fmt.Sprintf("%d ready, NARWHAL_MIN_READY=%d", s.ReadyCount, b.MinReady)},
		{"not-draining", !b.Draining(), "narwhal --drain has not run"},
		{"not-stopping", !s.Stopping, "no graceful stop under way"},
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	for _, c := range checks {
		mark := "+"
		if !c.pass {
			mark = "-"
		}
		fmt.Fprintf(w, "[%s]%s: %s\n", mark, c.name, c.detail)
	}
	if ok {
		fmt.Fprintln(w, "readyz check passed")
	} else {
		fmt.Fprintln(w, "readyz check failed")
	}
}

func limit(h http.Handler, n int) http.Handler {
	sem := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
			h.ServeHTTP(w, r)
		default:
			http.Error(w, "too many requests in flight", http.StatusServiceUnavailable)
		}
	})
}

// Listen binds the metrics address before anything starts, so a taken port fails the start.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("NARWHAL_METRICS_ADDR: %w", err)
	}
	return ln, nil
}

// NewServer returns the server of h, with timeouts that bound every request. Its Serve is an
// actor of narwhal's run group and Close its interrupt: a metrics server that stops serving
// ends narwhal, since orchestrators would then see it as dead.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
}

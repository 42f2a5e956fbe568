//go:build e2e

package e2e_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/loadgen"
)

// TestKubeletTermination plays the kubelet's part in a pod's termination against a pool under
// load: the preStop hook runs narwhal --drain (the pod turns unready at once and the endpoints
// controller would stop sending traffic; here the traffic goes on for the whole drain delay and
// must all succeed), then SIGTERM, then SIGKILL if the grace period passes. The grace period is
// the one the Helm chart derives: drain delay + stop timeout + a margin.
func TestKubeletTermination(t *testing.T) {
	e2e.Require(t)
	const drain, stop, margin = 2 * time.Second, 5 * time.Second, 5 * time.Second
	grace := drain + stop + margin
	app, mport := e2e.FreePort(t), e2e.FreePort(t)
	p := e2e.Start(t, e2e.Options{Env: []string{
		"NARWHAL_WORKERS=3", "NARWHAL_LISTEN=127.0.0.1:" + strconv.Itoa(app),
		"NARWHAL_METRICS_ADDR=127.0.0.1:" + strconv.Itoa(mport),
		fmt.Sprintf("NARWHAL_DRAIN_DELAY=%s", drain), fmt.Sprintf("NARWHAL_STOP_TIMEOUT=%s", stop),
	}}, e2e.Example(t, "go")...)
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", mport)
	status := func() int {
		resp, err := http.Get(readyz)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if !e2e.Eventually(30*time.Second, func() bool { return status() == 200 }) {
		t.Fatal("never ready")
	}
	load := loadgen.Start(fmt.Sprintf("http://127.0.0.1:%d/", app), 4, 2)

	// preStop: narwhal --drain, in the container's namespaces.
	var unreadySeen atomic.Bool
	hookDone := make(chan int, 1)
	hookStart := time.Now()
	go func() { code, _, _ := p.Client(-1, "--drain"); hookDone <- code }()
	watching := true
	for watching {
		select {
		case code := <-hookDone:
			if code != 0 {
				t.Errorf("preStop narwhal --drain exit code = %d", code)
			}
			watching = false
		default:
			if status() == 503 {
				unreadySeen.Store(true)
			} else if unreadySeen.Load() {
				t.Error("/readyz went back to 200 during the drain")
			}
		}
	}
	hookTook := time.Since(hookStart)
	load.Stop() // everything sent before SIGTERM
	if !unreadySeen.Load() {
		t.Error("/readyz never answered 503 during the preStop hook")
	}
	if hookTook < drain {
		t.Errorf("preStop returned after %s, before the %s drain delay", hookTook, drain)
	}
	if f := load.Failed.Load(); f != 0 {
		t.Errorf("%d of %d requests sent before SIGTERM failed:\n%s", f, load.Sent.Load(), load.Errors())
	}

	// SIGTERM, and SIGKILL at the grace period (counted from the start of the hook).
	p.Signal(syscall.SIGTERM)
	left := grace - time.Since(hookStart)
	select {
	case <-p.Done():
	case <-time.After(left):
		p.Signal(syscall.SIGKILL)
		t.Fatalf("narwhal still running at the end of the %s grace period", grace)
	}
	if code := p.Wait(time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	t.Logf("termination: preStop took %s, %d requests during it, %d failed; narwhal gone %s after the hook began (grace %s)",
		hookTook.Round(time.Millisecond), load.Sent.Load(), load.Failed.Load(), time.Since(hookStart).Round(time.Millisecond), grace)
}

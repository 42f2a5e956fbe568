//go:build e2e

package e2e_test

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/loadgen"
)

// Container tests run narwhal as a container's PID 1 from the images e2e.Images builds with
// the project's Dockerfile.

const (
	dockerTimeout = e2e.DockerTimeout
	image         = e2e.ExampleImage
	plainImage    = e2e.PlainImage
)

func requireDocker(t *testing.T) { e2e.RequireDocker(t) }
func buildImage(t *testing.T)    { e2e.Images(t) }

func docker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return e2e.Docker(args...)
}

func must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := docker(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// run starts a container in the background and removes it when the test ends.
func run(t *testing.T, args ...string) string {
	t.Helper()
	id := must(t, append([]string{"run", "-d"}, args...)...)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := docker(t, "logs", id)
			t.Logf("container logs:\n%s", logs)
		}
		docker(t, "rm", "-f", id)
	})
	return id
}

func logsContain(t *testing.T, id, s string, n int) bool {
	return e2e.Eventually(dockerTimeout, func() bool {
		out, _ := exec.Command("docker", "logs", id).CombinedOutput()
		return strings.Count(string(out), s) >= n
	})
}

func inspect(t *testing.T, id, format string) string {
	return must(t, "inspect", "-f", format, id)
}

// TestContainerPool: the example pool serves on a published port; docker kill --signal HUP
// under load rolls it over with no failed request; docker stop ends it with exit code 0.
func TestContainerPool(t *testing.T) {
	requireDocker(t)
	buildImage(t)
	port := e2e.FreePort(t)
	id := run(t, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port), "-e", "NARWHAL_WORKERS=3", "-e", "BOOT_DELAY=200ms", image)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if !e2e.Eventually(dockerTimeout, func() bool { _, err := e2e.Get(url); return err == nil }) {
		t.Fatal("the container never served")
	}
	load := loadgen.Start(url, 4, 2)
	must(t, "kill", "--signal", "HUP", id)
	if !logsContain(t, id, `"event":"rollout_completed"`, 1) {
		t.Fatal("no rollout completed after docker kill --signal HUP")
	}
	load.Stop()
	if f := load.Failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed across the rollout:\n%s", f, load.Sent.Load(), load.Errors())
	}
	start := time.Now()
	must(t, "stop", "-t", "20", id)
	if code := inspect(t, id, "{{.State.ExitCode}}"); code != "0" {
		t.Errorf("exit code after docker stop = %s, want 0", code)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("docker stop took %s; narwhal should stop well within the timeout", el)
	}
	t.Logf("in a container: rollout under load, %d requests, %d failed; docker stop took %s",
		load.Sent.Load(), load.Failed.Load(), time.Since(start).Round(time.Millisecond))
}

// TestContainerInitMode: without NARWHAL_LISTEN narwhal is an init: the container exits with
// the child's code, or 128+N when signal N killed it.
func TestContainerInitMode(t *testing.T) {
	requireDocker(t)
	buildImage(t)
	if out := must(t, "run", "--rm", plainImage, "--version"); !strings.HasPrefix(out, "narwhal e2e go1.") {
		t.Errorf("docker run narwhal --version = %q", out)
	}
	out, err := docker(t, "run", "--rm", "-e", "NARWHAL_LISTEN=", "-e", "EXIT_WITH=42", image)
	if err == nil || !strings.Contains(err.Error(), "exit status 42") {
		t.Errorf("docker run of a child exiting 42: %q, %v", out, err)
	}
	id := run(t, "-e", "NARWHAL_LISTEN=", image)
	if !logsContain(t, id, `"event":"start"`, 1) {
		t.Fatal("child never started")
	}
	must(t, "kill", "--signal", "HUP", id) // the Go example does not handle SIGHUP: it dies of it
	code := must(t, "wait", id)
	if code != strconv.Itoa(128+1) {
		t.Errorf("exit code = %s, want 129 (SIGHUP forwarded, child killed by it)", code)
	}
}

// TestContainerHealthcheck: HEALTHCHECK (narwhal --healthcheck) turns healthy, and unhealthy
// after docker exec … narwhal --drain, which returns after the drain delay.
func TestContainerHealthcheck(t *testing.T) {
	requireDocker(t)
	buildImage(t)
	id := run(t, "--health-interval=500ms", "--health-retries=1", "--health-start-period=0s",
		"-e", "NARWHAL_WORKERS=1", "-e", "NARWHAL_DRAIN_DELAY=1s", image)
	status := func(want string) {
		t.Helper()
		var got string
		if !e2e.Eventually(dockerTimeout, func() bool { got = inspect(t, id, "{{.State.Health.Status}}"); return got == want }) {
			t.Fatalf("health = %s, want %s", got, want)
		}
	}
	status("healthy")
	start := time.Now()
	must(t, "exec", id, "/narwhal", "--drain")
	if el := time.Since(start); el < time.Second {
		t.Errorf("--drain returned after %s, before NARWHAL_DRAIN_DELAY=1s", el)
	}
	status("unhealthy")
}

// TestContainerLockedDown: a read-only root, uid 65532, no /tmp and no /etc/passwd.
func TestContainerLockedDown(t *testing.T) {
	requireDocker(t)
	buildImage(t)
	port := e2e.FreePort(t)
	id := run(t, "--read-only", "--user", "65532:65532", "--cap-drop", "ALL",
		"-p", fmt.Sprintf("127.0.0.1:%d:8080", port), "-e", "NARWHAL_WORKERS=2", image)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if !e2e.Eventually(dockerTimeout, func() bool { _, err := e2e.Get(url); return err == nil }) {
		t.Fatal("the locked-down container never served")
	}
	st := must(t, "exec", id, "/narwhal", "--status")
	if !strings.Contains(st, `"mode":"pool"`) || !strings.Contains(st, `"ready":true`) {
		t.Errorf("--status = %s", st)
	}
	if _, err := docker(t, "exec", id, "/narwhal", "--healthcheck"); err != nil {
		t.Errorf("--healthcheck: %v", err)
	}
}

// TestContainersShareNetwork: two narwhal containers in one network namespace (a pod) each
// drain only themselves.
func TestContainersShareNetwork(t *testing.T) {
	requireDocker(t)
	buildImage(t)
	a := run(t, "-e", "NARWHAL_WORKERS=1", "-e", "NARWHAL_DRAIN_DELAY=100ms", image)
	b := run(t, "--network", "container:"+a, "-e", "NARWHAL_WORKERS=1",
		"-e", "NARWHAL_LISTEN=:8081", "-e", "NARWHAL_METRICS_ADDR=:9091", image)
	for _, id := range []string{a, b} {
		if !e2e.Eventually(dockerTimeout, func() bool { _, err := docker(t, "exec", id, "/narwhal", "--healthcheck"); return err == nil }) {
			t.Fatalf("%s never became ready", id[:12])
		}
	}
	must(t, "exec", a, "/narwhal", "--drain")
	if _, err := docker(t, "exec", a, "/narwhal", "--healthcheck"); err == nil {
		t.Error("a is still ready after its own drain")
	}
	if _, err := docker(t, "exec", b, "/narwhal", "--healthcheck"); err != nil {
		t.Errorf("b became unready when a drained: %v", err)
	}
}

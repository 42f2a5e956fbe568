package deploy

// A standalone kubelet for the chart's pods: a kubelet built from the Go module proxy (cached),
// a private containerd with its CRI plugin, bridge networking from Debian's CNI plugins, and
// images built here from the project's Dockerfile. No API server: pods are static, read from a
// directory, and their status comes from the kubelet's read-only port. Everything the node
// does to the host is undone when the test ends.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const (
	// kubeVersion is the kubelet the tests run. 1.34 still runs on cgroup v1 (with a warning);
	// later ones want a containerd newer than Debian's 1.6.
	kubeVersion = "v1.34.4"
	// etcdVersion is the etcd the cluster tests' API server stores in (Kubernetes 1.34 was
	// released with 3.6).
	etcdVersion = "v3.6.16"
	nodeName    = "narwhal-e2e"
	pauseImage  = "narwhal-e2e:pause" // Debian's static catatonit -P
	// podSubnet is the bridge network's; the host is its gateway, .1.
	podSubnet = "10.231.7.0/24"
	bridge    = "narwhal-cni0"
)

// kubeletSysctls are the kernel settings the kubelet sets at start (protectKernelDefaults off):
// read before it starts, written back after it stops.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// node is a running kubelet and containerd: standalone on the host, or a cluster's node in a
// network namespace of its own (cluster_test.go).
type node struct {
	t          testing.TB
	dir        string // everything of this node's: manifests, state, logs
	sock       string // containerd's
	readOnly   int    // the kubelet's read-only port
	kubelet    *exec.Cmd
	ns         *netns // nil: the host's network
	kubeconfig string // the API server the kubelet registers with; "": none, static pods only
}

// http is a client for the node's addresses: its pods and the kubelet's ports.
func (n *node) http(timeout time.Duration) *http.Client {
	if n.ns != nil {
		return n.ns.client(timeout)
	}
	return &http.Client{Timeout: timeout}
}

// requireNode skips t (or fails it, when NARWHAL_E2E=required) unless this machine can run a
// kubelet: root, Docker to build the images, containerd and runc to run them.
func requireNode(t *testing.T) {
	t.Helper()
	reason := ""
	switch {
	case os.Geteuid() != 0:
		reason = "the kubelet tests need root"
	case lookPath("containerd") != nil || lookPath("runc") != nil || lookPath("ctr") != nil:
		reason = "the kubelet tests need containerd, ctr and runc (Debian: containerd runc)"
	}
	if reason != "" {
		if os.Getenv("NARWHAL_E2E") == "required" {
			t.Fatalf("%s, and NARWHAL_E2E=required", reason)
		}
		t.Skipf("%s (set NARWHAL_E2E=required to make this a failure)", reason)
	}
	e2e.RequireDocker(t)
}

func lookPath(name string) error { _, err := exec.LookPath(name); return err }

// startNode starts containerd and the kubelet and returns once the kubelet answers. Cleanup
// stops both and undoes what they did to the host.
func startNode(t *testing.T) *node {
	t.Helper()
	lockHost(t)
	kube := kubeBinaries(t)
	cni := debianPackage(t, "containernetworking-plugins")
	catatonit := debianPackage(t, "catatonit")
	e2e.Images(t)

	dir, err := os.MkdirTemp("", "narwhal-kubelet-")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, dir: dir, sock: filepath.Join(dir, "containerd.sock"), readOnly: freePort(t)}
	for _, d := range []string{"manifests", "cni/conf", "logs", "containerd", "kubelet"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Cleanups run last-in first-out: the host is put back after both daemons are gone.
	t.Cleanup(snapshotHost(t, dir))

	n.startContainerd(t, filepath.Join(cni, "usr/lib/cni"))
	n.loadImages(t, filepath.Join(catatonit, "usr/bin/catatonit"))
	n.startKubelet(t, filepath.Join(kube, "kubelet"))
	return n
}

// lockHost waits for any other run of these tests on this machine to end: a node changes
// what is the host's alone (the kubepods cgroups, the kubelet's sysctls, /var/lib/kubelet), and
// two would undo each other's work. It also guards the kubelet's cache while it is built.
func lockHost(t *testing.T) {
	t.Helper()
	dir := "/run/lock" // one path for every run, whatever its TMPDIR
	if _, err := os.Stat(dir); err != nil {
		dir = "/run"
	}
	f, err := os.OpenFile(filepath.Join(dir, "narwhal-kubelet-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// Give up in time for this run's own cleanups, which a test binary's timeout would skip.
	giveUp := time.Now().Add(20 * time.Minute)
	if d, ok := t.Deadline(); ok {
		giveUp = d.Add(-5 * time.Minute)
	}
	start := time.Now()
	for syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		if time.Now().After(giveUp) {
			f.Close()
			t.Fatalf("another run of the kubelet tests held the host for %s", time.Since(start).Round(time.Second))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %s for another run of the kubelet tests", waited.Round(time.Second))
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// kubeCommands are the Kubernetes programs the tests run, built together by kubeBinaries: a
// standalone kubelet needs only the first; a cluster needs them all.
var kubeCommands = []string{"kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl"}

// kubeBinaries builds kubeCommands once per Kubernetes and Go version, under the user's cache
// directory, and returns that directory. k8s.io/kubernetes points its staging modules at
// ./staging, which the module's download does not hold: they are replaced by their published
// k8s.io/* v0.x twins. One `go build -o dir/` of all the commands compiles what they share once.
func kubeBinaries(t *testing.T) string {
	t.Helper()
	dir := buildDir(t, "kubernetes-"+kubeVersion)
	if _, err := os.Stat(filepath.Join(dir, ".built")); err == nil {
		return dir
	}
	t.Logf("building Kubernetes %s (%s) into %s, once: about ten minutes on two cores",
		kubeVersion, strings.Join(kubeCommands, ", "), dir)
	var mod struct{ GoMod string }
	if err := json.Unmarshal(goIn(t, dir, "mod", "download", "-json", "k8s.io/kubernetes@"+kubeVersion), &mod); err != nil {
		t.Fatal(err)
	}
	upstream, err := os.ReadFile(mod.GoMod)
	if err != nil {
		t.Fatal(err)
	}
	staging := "v0." + strings.TrimPrefix(kubeVersion, "v1.")
	var gomod strings.Builder
	fmt.Fprintf(&gomod, "module kubebuild\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", kubeVersion)
	for line := range strings.Lines(string(upstream)) {
		if f := strings.Fields(line); len(f) == 3 && f[1] == "=>" && strings.HasPrefix(f[2], "./staging/") {
			fmt.Fprintf(&gomod, "\t%s => %s %s\n", f[0], f[0], staging)
		}
	}
	gomod.WriteString(")\n")
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"build", "-mod=mod", "-trimpath", "-ldflags=-s -w", "-o", dir + "/"}
	for _, c := range kubeCommands {
		args = append(args, "k8s.io/kubernetes/cmd/"+c)
	}
	goIn(t, dir, args...)
	if err := os.WriteFile(filepath.Join(dir, ".built"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// etcdBinary builds etcd once per version, as kubeBinaries builds Kubernetes. `go install` refuses
// etcd's server module, whose go.mod has replace directives; a module that only requires it
// builds its main package with the published versions of its siblings.
func etcdBinary(t *testing.T) string {
	t.Helper()
	dir := buildDir(t, "etcd-"+etcdVersion)
	bin := filepath.Join(dir, "etcd")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building etcd %s into %s, once", etcdVersion, dir)
	gomod := "module etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 " + etcdVersion + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	goIn(t, dir, "build", "-mod=mod", "-trimpath", "-ldflags=-s -w", "-o", bin+".tmp", "go.etcd.io/etcd/server/v3")
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// buildDir is the cache directory for one build of name with this Go.
func buildDir(t *testing.T, name string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "narwhal", name+"-"+runtime.Version())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// goIn runs the go command in dir for a build of the tests' programs, and returns its output.
func goIn(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=local")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// debianPackage unpacks one of Debian's packages under the user's cache directory, without
// installing it, and returns where.
func debianPackage(t *testing.T, name string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "narwhal", "debian", name)
	if _, err := os.Stat(filepath.Join(dir, ".unpacked")); err == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	download := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "download", name)
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download %s: %v\n%s", name, err, b)
		}
		return nil
	}
	if err := download(); err != nil {
		if b, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
			t.Fatalf("apt-get update: %v\n%s", err, b)
		}
		if err := download(); err != nil {
			t.Fatal(err)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if len(debs) == 0 {
		t.Fatalf("apt-get download %s left no .deb in %s", name, dir)
	}
	if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", debs[0], err, b)
	}
	if err := os.WriteFile(filepath.Join(dir, ".unpacked"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func freePort(t *testing.T) int { return e2e.FreePort(t) }

// daemon starts a long-running command with its output in a file under the node's directory;
// cleanup sends SIGTERM and waits, then SIGKILL.
func (n *node) daemon(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(filepath.Join(n.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if n.ns != nil {
		args = n.ns.command(args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop within 30s of SIGTERM; killing it", name)
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("%s's log: %s", name, tail(filepath.Join(n.dir, name+".log"), 60))
		}
	})
	return cmd
}

func (n *node) startContainerd(t *testing.T, cniBin string) {
	t.Helper()
	d := filepath.Join(n.dir, "containerd")
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # This machine lacks CAP_SYS_RESOURCE: without this, runc cannot lower the pause
  # container's oom_score_adj and fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, d+"/root", d+"/state", n.sock, d+"/opt", pauseImage, d+"/runc", cniBin, filepath.Join(n.dir, "cni/conf"))
	if err := os.WriteFile(filepath.Join(d, "config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// The gateway is the host's address on the bridge; host-local keeps its leases here.
	gw := strings.TrimSuffix(podSubnet, "0/24") + "1"
	conflist := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "narwhal-e2e", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "subnet": %q, "gateway": %q, "dataDir": %q,
            "routes": [{"dst": "0.0.0.0/0"}]}}]}`, bridge, podSubnet, gw, filepath.Join(n.dir, "cni/leases"))
	if err := os.WriteFile(filepath.Join(n.dir, "cni/conf/10-narwhal.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	n.daemon(t, "containerd", "containerd", "--config", filepath.Join(d, "config.toml"))
	if !e2e.Eventually(30*time.Second, func() bool { _, err := n.ctr("version"); return err == nil }) {
		t.Fatalf("containerd never answered on %s:\n%s", n.sock, tail(filepath.Join(n.dir, "containerd.log"), 30))
	}
}

// ctr runs containerd's client against this node's containerd, in the CRI's namespace.
func (n *node) ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.sock, "--namespace", "k8s.io"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// loadImages moves the Dockerfile's example image, a pause image (catatonit -P on scratch) and
// any other images named from Docker into containerd.
func (n *node) loadImages(t *testing.T, catatonit string, others ...string) {
	t.Helper()
	ctxDir := filepath.Join(n.dir, "pause")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(catatonit)
	if err == nil {
		err = os.WriteFile(filepath.Join(ctxDir, "pause"), b, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT [\"/pause\", \"-P\"]\n"), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e2e.Docker("build", "-q", "-t", pauseImage, ctxDir); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(n.dir, "images.tar")
	if _, err := e2e.Docker(append([]string{"save", "-o", tarball, e2e.ExampleImage, pauseImage}, others...)...); err != nil {
		t.Fatal(err)
	}
	if out, err := n.ctr("images", "import", "--snapshotter", "native", tarball); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	os.Remove(tarball)
}

func (n *node) startKubelet(t *testing.T, bin string) {
	t.Helper()
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %s
fileCheckFrequency: 1s
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
address: 127.0.0.1
port: %d
readOnlyPort: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
podLogsDir: %s
resolvConf: ""
makeIPTablesUtilChains: false
`, filepath.Join(n.dir, "manifests"), n.sock, freePort(t), n.readOnly, freePort(t), filepath.Join(n.dir, "logs"))
	args := []string{bin, "--root-dir", filepath.Join(n.dir, "kubelet"), "--cert-dir", filepath.Join(n.dir, "kubelet/pki"),
		"--hostname-override", nodeName, "--v=3"} // --v=3 logs each preStop hook the kubelet runs
	if n.kubeconfig != "" {
		// A cluster's node: the API server reaches it on the node's address for logs, and a
		// short sync brings a changed ConfigMap into its pods within seconds, not a minute.
		config = strings.Replace(config, "address: 127.0.0.1", "address: "+nodeIP, 1) + "syncFrequency: 5s\n"
		args = append(args, "--kubeconfig", n.kubeconfig, "--node-ip", nodeIP)
	}
	path := filepath.Join(n.dir, "kubelet.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	n.kubelet = n.daemon(t, "kubelet", append(args, "--config", path)...)
	if !e2e.Eventually(60*time.Second, func() bool { _, err := n.pods(); return err == nil }) {
		t.Fatalf("the kubelet never answered on its read-only port:\n%s", tail(filepath.Join(n.dir, "kubelet.log"), 40))
	}
	// Remove every pod before the kubelet stops (cleanups run in reverse), so that their
	// containers, sandboxes and network are torn down by the kubelet itself.
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join(n.dir, "manifests", "*.yaml"))
		for _, f := range files {
			os.Remove(f)
		}
		if !e2e.Eventually(90*time.Second, func() bool { p, err := n.pods(); return err == nil && len(p) == 0 }) {
			t.Errorf("pods still on the node 90s after their manifests were removed")
		}
		if !e2e.Eventually(60*time.Second, func() bool { out, _ := n.ctr("tasks", "ls", "-q"); return strings.TrimSpace(out) == "" }) {
			t.Errorf("containers still running 60s after their pods were removed")
		}
	})
}

// pods is the kubelet's view of its pods, with their status, from the read-only port.
func (n *node) pods() ([]corev1.Pod, error) {
	addr := "127.0.0.1"
	if n.kubeconfig != "" {
		addr = nodeIP // a cluster's kubelet serves on the node's address
	}
	resp, err := n.http(5 * time.Second).Get(fmt.Sprintf("http://%s:%d/pods", addr, n.readOnly))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list corev1.PodList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// pod is the kubelet's view of the static pod made from name's manifest, if it has one.
func (n *node) pod(name string) (corev1.Pod, bool) {
	pods, _ := n.pods()
	for _, p := range pods {
		if p.Name == name+"-"+nodeName {
			return p, true
		}
	}
	return corev1.Pod{}, false
}

// apply writes pod's manifest where the kubelet reads static pods, atomically.
func (n *node) apply(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	b, err := yaml.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(n.dir, pod.Name+".yaml.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.dir, "manifests", pod.Name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

// remove deletes pod name's manifest: the kubelet then stops the pod as if it were deleted.
func (n *node) remove(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(n.dir, "manifests", name+".yaml")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// ready reports whether the pod's Ready condition is true.
func ready(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// containerID is the containerd ID of the pod's app container.
func containerID(p corev1.Pod) string {
	for _, c := range p.Status.ContainerStatuses {
		if c.Name == "app" {
			return strings.TrimPrefix(c.ContainerID, "containerd://")
		}
	}
	return ""
}

// exits follows containerd's task exit events; each exited container's ID and status arrive
// on the channel until the test ends.
type taskExit struct {
	ID     string
	Status uint32
	At     time.Time
}

func (n *node) exits(t *testing.T) <-chan taskExit {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ctr", "--address", n.sock, "events")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan taskExit, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			i := strings.Index(line, " /tasks/exit {")
			if i < 0 {
				continue
			}
			var ev struct {
				ContainerID string `json:"container_id"`
				ID          string `json:"id"`
				ExitStatus  uint32 `json:"exit_status"`
			}
			if json.Unmarshal([]byte(line[i+len(" /tasks/exit "):]), &ev) == nil && ev.ID == ev.ContainerID {
				select {
				case ch <- taskExit{ev.ContainerID, ev.ExitStatus, time.Now()}:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); cmd.Wait(); wg.Wait() })
	return ch
}

// snapshotHost records what the node will change on the host and returns the function that
// puts it back: sysctls, cgroups, mounts, network namespaces, links, the runtime's sockets.
func snapshotHost(t *testing.T, dir string) func() {
	sysctls := map[string][]byte{}
	for _, k := range kubeletSysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			sysctls[k] = b
		}
	}
	cgroups := kubeCgroups()
	netns := listDir("/var/run/netns")
	shims := listDir("/run/containerd/s")
	// Paths the kubelet, containerd, its shims, ctr and the CNI cache create outside the node's
	// directory: removed after if they were not there before.
	var created []string
	for _, p := range []string{"/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/var/run/netns"} {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			created = append(created, p)
		}
	}
	return func() {
		for _, m := range mountsUnder(dir) {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", m, err)
			}
		}
		for _, name := range listDir("/var/run/netns") {
			if !slices.Contains(netns, name) && strings.HasPrefix(name, "cni-") {
				syscall.Unmount("/var/run/netns/"+name, syscall.MNT_DETACH)
				os.Remove("/var/run/netns/" + name)
			}
		}
		for _, name := range listDir("/run/containerd/s") {
			if !slices.Contains(shims, name) {
				os.Remove("/run/containerd/s/" + name)
			}
		}
		for _, p := range created {
			if err := os.RemoveAll(p); err != nil {
				t.Errorf("remove %s: %v", p, err)
			}
		}
		if _, err := net.InterfaceByName(bridge); err == nil {
			if b, err := exec.Command("ip", "link", "delete", bridge).CombinedOutput(); err != nil {
				t.Errorf("ip link delete %s: %v: %s", bridge, err, b)
			}
		}
		for _, cg := range kubeCgroups() {
			if !slices.Contains(cgroups, cg) {
				removeCgroup(t, cg)
			}
		}
		for k, v := range sysctls {
			if now, _ := os.ReadFile("/proc/sys/" + k); !bytes.Equal(now, v) {
				if err := os.WriteFile("/proc/sys/"+k, v, 0o644); err != nil {
					t.Errorf("restore %s: %v", k, err)
				}
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the node's directory: %v", err)
		}
	}
}

// kubeCgroups are the top-level kubepods cgroups, one per hierarchy.
func kubeCgroups() []string {
	var out []string
	for _, h := range listDir("/sys/fs/cgroup") {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, "kubepods")); err == nil {
			out = append(out, filepath.Join("/sys/fs/cgroup", h, "kubepods"))
		}
	}
	return out
}

// removeCgroup removes a cgroup and its children, deepest first. Cgroups still holding
// processes cannot be removed; that is an error of the test's cleanup.
func removeCgroup(t *testing.T, dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for _, d := range slices.Backward(dirs) {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
}

func listDir(dir string) []string {
	ents, _ := os.ReadDir(dir)
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// mountsUnder lists the mount points under dir, deepest (latest) first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	slices.Reverse(out)
	return out
}

// log is the kubelet's log so far.
func (n *node) log() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "kubelet.log"))
	return string(b)
}

// logged is when the kubelet first logged a line containing s (klog's header: Lmmdd
// hh:mm:ss.uuuuuu, local time).
func (n *node) logged(s string) (time.Time, bool) {
	for line := range strings.Lines(n.log()) {
		if !strings.Contains(line, s) || len(line) < 21 {
			continue
		}
		at, err := time.ParseInLocation("0102 15:04:05.000000", line[1:21], time.Local)
		if err != nil {
			return time.Time{}, false
		}
		now := time.Now()
		return at.AddDate(now.Year(), 0, 0), true
	}
	return time.Time{}, false
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

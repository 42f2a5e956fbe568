package deploy

// A one-node Kubernetes cluster for the chart: etcd, the API server, the controller manager,
// the scheduler, kube-proxy (iptables) and a kubelet with a private containerd, all built from
// the Go module proxy at the kubelet's version (node_test.go caches them), and all in a network
// namespace of the test's own (netns_test.go). The tests send load to a Service's ClusterIP from
// inside that namespace, through kube-proxy's rules, while kubectl rolls, scales, deletes and
// drains: what a Kubernetes user meets one level above the kubelet.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/loadgen"
	corev1 "k8s.io/api/core/v1"
)

const (
	serviceRange = "10.231.9.0/24" // ClusterIPs
	adminToken   = "narwhal-e2e-admin"
	tiniImage    = "narwhal-e2e:tini" // the Go example behind tini, as people run it today
	apiPort      = 6443
	etcdPort     = 2379
)

// cluster is a running control plane and its one node.
type cluster struct {
	*node
	bin string // the Kubernetes programs
}

// startCluster starts the cluster and returns once its node is Ready and the default namespace
// can take pods. Cleanup deletes every workload, stops everything and puts the host back.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	lockHost(t)
	kube := kubeBinaries(t)
	etcd := etcdBinary(t)
	cni := debianPackage(t, "containernetworking-plugins")
	catatonit := debianPackage(t, "catatonit")
	tini := debianPackage(t, "tini")
	e2e.Images(t)
	buildTiniImage(t, filepath.Join(tini, "usr/bin/tini-static"))

	dir, err := os.MkdirTemp("", "narwhal-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, dir: dir, sock: filepath.Join(dir, "containerd.sock"), readOnly: 10255}
	for _, d := range []string{"manifests", "cni/conf", "logs", "containerd", "kubelet", "etcd", "pki"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(snapshotHost(t, dir))
	n.ns = newNetns(t)
	c := &cluster{node: n, bin: kube}
	c.credentials(t)
	pki := filepath.Join(dir, "pki")

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort+1)
	n.daemon(t, "etcd", etcd, "--name", "e2e", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "e2e="+peerURL,
		"--unsafe-no-fsync") // a test's data: no need to wait for the disk
	if !e2e.Eventually(60*time.Second, func() bool { return status200(n, etcdURL+"/health") }) {
		t.Fatalf("etcd never answered:\n%s", tail(filepath.Join(dir, "etcd.log"), 30))
	}
	n.daemon(t, "kube-apiserver", filepath.Join(kube, "kube-apiserver"),
		"--etcd-servers", etcdURL, "--secure-port", strconv.Itoa(apiPort), "--advertise-address", nodeIP,
		"--cert-dir", filepath.Join(pki, "apiserver"), "--service-cluster-ip-range", serviceRange,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(pki, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(pki, "sa.key"),
		"--token-auth-file", filepath.Join(pki, "tokens.csv"), "--authorization-mode", "AlwaysAllow",
		"--kubelet-preferred-address-types", "InternalIP", // the node has no name in DNS
		"--allow-privileged", "--profiling=false")
	if !e2e.Eventually(3*time.Minute, func() bool { _, err := c.kubectl("get", "--raw", "/readyz"); return err == nil }) {
		t.Fatalf("the API server was never ready:\n%s", tail(filepath.Join(dir, "kube-apiserver.log"), 40))
	}
	n.daemon(t, "kube-controller-manager", filepath.Join(kube, "kube-controller-manager"),
		"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--use-service-account-credentials=false",
		"--root-ca-file", filepath.Join(pki, "apiserver", "apiserver.crt"), // published as kube-root-ca.crt
		"--bind-address", "127.0.0.1", "--profiling=false")
	n.daemon(t, "kube-scheduler", filepath.Join(kube, "kube-scheduler"),
		"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1", "--profiling=false")

	n.startContainerd(t, filepath.Join(cni, "usr/lib/cni"))
	n.loadImages(t, filepath.Join(catatonit, "usr/bin/catatonit"), tiniImage)
	n.startKubelet(t, filepath.Join(kube, "kubelet"))
	c.startProxy(t)

	if out, err := c.kubectl("wait", "--for=condition=Ready", "node/"+nodeName, "--timeout=120s"); err != nil {
		t.Fatalf("the node never became Ready: %v\n%s\n%s", err, out, tail(filepath.Join(dir, "kubelet.log"), 40))
	}
	if !e2e.Eventually(60*time.Second, func() bool { _, err := c.kubectl("get", "serviceaccount", "default"); return err == nil }) {
		t.Fatalf("no default service account:\n%s", tail(filepath.Join(dir, "kube-controller-manager.log"), 40))
	}
	// Runs before the kubelet's cleanup, which waits for its pods to be gone.
	t.Cleanup(func() {
		if out, err := c.kubectl("delete", "deployments,services,poddisruptionbudgets,configmaps", "--all", "--wait=false"); err != nil {
			t.Errorf("delete the workloads: %v\n%s", err, out)
		}
	})
	return c
}

// credentials writes the service account signing key, the admin's token and a kubeconfig with it.
// The API server's serving certificate is its own, self-signed: clients skip verifying it.
func (c *cluster) credentials(t *testing.T) {
	t.Helper()
	pki := filepath.Join(c.dir, "pki")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	c.kubeconfig = filepath.Join(pki, "admin.kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "https://127.0.0.1:%d", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %s}}]
contexts: [{name: e2e, context: {cluster: e2e, user: admin}}]
current-context: e2e
`, apiPort, adminToken)
	for name, b := range map[string][]byte{
		"sa.key":           pemKey,
		"tokens.csv":       []byte(adminToken + `,admin,admin,"system:masters"` + "\n"),
		"admin.kubeconfig": []byte(kubeconfig),
	} {
		if err := os.WriteFile(filepath.Join(pki, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// startProxy runs kube-proxy in iptables mode, its conntrack settings left alone (0), as kind
// does: the namespace's table is the namespace's, and its sysctls are not namespaced.
func (c *cluster) startProxy(t *testing.T) {
	t.Helper()
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %q}
mode: iptables
hostnameOverride: %s
clusterCIDR: %s
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, c.kubeconfig, nodeName, podSubnet)
	path := filepath.Join(c.dir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	c.daemon(t, "kube-proxy", filepath.Join(c.bin, "kube-proxy"), "--config", path)
	if !e2e.Eventually(60*time.Second, func() bool { return status200(c.node, "http://127.0.0.1:10256/healthz") }) {
		t.Fatalf("kube-proxy was never healthy:\n%s", tail(filepath.Join(c.dir, "kube-proxy.log"), 40))
	}
}

// buildTiniImage builds tiniImage: the Go example as PID 1's only child of tini, FROM scratch.
func buildTiniImage(t *testing.T, tini string) {
	t.Helper()
	dir := t.TempDir()
	root, err := e2e.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "server"), "./examples/go")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/go: %v\n%s", err, b)
	}
	b, err := os.ReadFile(tini)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "tini"), b, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY tini /tini\nCOPY server /app/server\n"+
			"USER 65532:65532\nENTRYPOINT [\"/tini\", \"--\", \"/app/server\"]\n"), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e2e.Docker("build", "-q", "-t", tiniImage, dir); err != nil {
		t.Fatal(err)
	}
}

// kubectl runs kubectl against the cluster, from inside its namespace, bounded in time.
func (c *cluster) kubectl(args ...string) (string, error) {
	return c.kubectlIn(nil, args...)
}

// kubectlIn is kubectl with stdin.
func (c *cluster) kubectlIn(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	argv := c.ns.command(append([]string{filepath.Join(c.bin, "kubectl"), "--kubeconfig", c.kubeconfig}, args...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, bytes.NewReader(stdin)
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// must is kubectl that fails the test on an error.
func (c *cluster) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.kubectl(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// apply applies manifests with kubectl.
func (c *cluster) apply(t *testing.T, manifests string) {
	t.Helper()
	if out, err := c.kubectlIn([]byte(manifests), "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, manifests)
	}
}

// pods are the pods with the label selector, as the API server has them.
func (c *cluster) pods(t *testing.T, selector string) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := json.Unmarshal([]byte(c.must(t, "get", "pods", "-l", selector, "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// settled waits until exactly want pods match selector, each Ready and none terminating: a
// rollout or a scale is over only when its last old pod is gone.
func (c *cluster) settled(t *testing.T, selector string, want int) {
	t.Helper()
	var pods []corev1.Pod
	ok := e2e.Eventually(4*time.Minute, func() bool {
		pods = c.pods(t, selector)
		if len(pods) != want {
			return false
		}
		for _, p := range pods {
			if p.DeletionTimestamp != nil || !ready(p) {
				return false
			}
		}
		return true
	})
	if !ok {
		var states []string
		for _, p := range pods {
			states = append(states, fmt.Sprintf("%s ready=%v deleting=%v phase=%s", p.Name, ready(p), p.DeletionTimestamp != nil, p.Status.Phase))
		}
		t.Fatalf("pods %s never settled at %d: %v\n%s", selector, want, states, c.must(t, "get", "events", "--sort-by=.lastTimestamp"))
	}
}

// serviceURL is the URL of a Service's first port on its ClusterIP, once kube-proxy sends
// connections to it on to pods. Not before: a connection to the address before that leaves a
// conntrack entry with no translation, and a later connection that reuses its source port
// within the entry's two minutes would follow it nowhere ("no route to host").
func (c *cluster) serviceURL(t *testing.T, name string) string {
	t.Helper()
	ip := c.must(t, "get", "service", name, "-o", "jsonpath={.spec.clusterIP}")
	port := c.must(t, "get", "service", name, "-o", "jsonpath={.spec.ports[0].port}")
	rule := regexp.MustCompile(`(?m)^-A KUBE-SERVICES -d ` + regexp.QuoteMeta(ip) + `/32 .*--dport ` + port + ` -j KUBE-SVC-`)
	var rules string
	if !e2e.Eventually(60*time.Second, func() bool {
		argv := c.ns.command("iptables-save", "-t", "nat")
		out, _ := exec.Command(argv[0], argv[1:]...).Output()
		rules = string(out)
		return rule.MatchString(rules)
	}) {
		t.Fatalf("kube-proxy never sent %s:%s on to pods:\n%s", ip, port, rules)
	}
	return "http://" + ip + ":" + port + "/"
}

// loaded is what a load through a Service saw while something happened to the pods behind it.
type loaded struct {
	sent, failed int
	took         time.Duration // the action, until its pods settled
	errs         string
}

// underLoad sends load to url from inside the node's namespace (fresh connections and
// keep-alive) while action runs, and counts the requests begun from when it starts until it
// returns. The load has been answered before the action starts, so a failure is the action's.
func (c *cluster) underLoad(t *testing.T, url string, action func()) loaded {
	t.Helper()
	load := loadgen.StartVia(url, 4, 2, c.ns.dial)
	defer load.Stop()
	if !e2e.Eventually(30*time.Second, func() bool { return load.Sent.Load()-load.Failed.Load() >= 50 }) {
		t.Fatalf("the Service at %s does not answer: %s", url, load.Errors())
	}
	start := time.Now()
	action()
	end := time.Now()
	during := loadgen.Between(load.Stop(), start, end)
	l := loaded{sent: len(during), failed: loadgen.Failed(during), took: end.Sub(start)}
	for _, r := range during {
		if r.Err != nil && strings.Count(l.errs, "\n") < 10 {
			l.errs += r.Start.UTC().Format("15:04:05.000000") + " " + r.Err.Error() + "\n"
		}
	}
	return l
}

func status200(n *node, url string) bool {
	resp, err := n.http(2 * time.Second).Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// TestCluster runs the chart on the cluster and compares it with the way people run the same
// app today. `make test-kubernetes` runs it; it prints the table the README quotes.
func TestCluster(t *testing.T) {
	requireNode(t)
	started := time.Now()
	c := startCluster(t)
	t.Logf("cluster up in %s", time.Since(started).Round(time.Second))
	var rows []string
	row := func(what string, l loaded) {
		rows = append(rows, fmt.Sprintf("| %s | %d | %d | %.1f |", what, l.sent, l.failed, l.took.Seconds()))
	}
	t.Run("Chart", func(t *testing.T) { testChartDisruptions(t, c, row) })
	t.Run("PlainTini", func(t *testing.T) { testPlainTini(t, c, row) })
	t.Run("WatchedConfig", func(t *testing.T) { testWatchedConfig(t, c, row) })
	t.Run("WorkersFromRequest", func(t *testing.T) { testWorkersFromRequest(t, c) })
	t.Logf("under load through the Service's ClusterIP (kube-proxy iptables), one node:\n"+
		"| what | requests | failed | took (s) |\n| --- | ---: | ---: | ---: |\n%s", strings.Join(rows, "\n"))
}

// chartValues are the chart's values for the image built here, with overrides.
func chartValues(overrides map[string]any) map[string]any {
	vals := map[string]any{"image": map[string]any{"repository": "narwhal-e2e", "tag": "example", "pullPolicy": "Never"}}
	for k, v := range overrides {
		vals[k] = v
	}
	return vals
}

const chartPods = "app.kubernetes.io/instance=narwhal"

// testChartDisruptions: the chart's Deployment of 3 behind its ClusterIP Service loses no
// request to a rollout restart, a pod deleted, a scale-down to 1 or a drain of the node, with no
// preStop sleep in the image: narwhal --drain is the preStop hook.
func testChartDisruptions(t *testing.T, c *cluster, row func(string, loaded)) {
	c.apply(t, render(t, chartValues(map[string]any{"replicaCount": 3,
		"podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 1}})).raw)
	c.settled(t, chartPods, 3)
	url := c.serviceURL(t, "narwhal")
	check := func(what string, l loaded) {
		t.Helper()
		row("narwhal chart: "+what, l)
		if l.failed != 0 {
			t.Errorf("%s: %d of %d requests failed:\n%s", what, l.failed, l.sent, l.errs)
		}
	}

	check("kubectl rollout restart", c.underLoad(t, url, func() {
		c.must(t, "rollout", "restart", "deployment/narwhal")
		c.must(t, "rollout", "status", "deployment/narwhal", "--timeout=3m")
		c.settled(t, chartPods, 3)
	}))
	check("kubectl delete pod", c.underLoad(t, url, func() {
		c.must(t, "delete", "pod", c.pods(t, chartPods)[0].Name)
		c.settled(t, chartPods, 3)
	}))
	check("kubectl scale --replicas=1", c.underLoad(t, url, func() {
		c.must(t, "scale", "deployment/narwhal", "--replicas=1")
		c.settled(t, chartPods, 1)
	}))
	c.must(t, "scale", "deployment/narwhal", "--replicas=3")
	c.settled(t, chartPods, 3)

	// One node: its drain evicts what the budget allows (minAvailable 1: two of three pods),
	// the replacements wait for a node, and the budget holds the last pod until the drain's
	// timeout. Every request is still answered, by the pod the budget kept.
	var evicted int
	check("kubectl drain (PodDisruptionBudget minAvailable 1)", c.underLoad(t, url, func() {
		out, err := c.kubectl("drain", nodeName, "--pod-selector", chartPods, "--timeout=20s")
		if err == nil {
			t.Errorf("the drain of the only node finished: the budget did not hold a pod\n%s", out)
		}
		evicted = strings.Count(out, " evicted")
		c.must(t, "uncordon", nodeName)
		c.settled(t, chartPods, 3)
	}))
	if evicted != 2 {
		t.Errorf("the drain evicted %d pods, want 2 of 3 with minAvailable 1", evicted)
	}
}

// testPlainTini: the same Go app behind tini, in a plain Deployment with a readiness probe,
// rolled out the same way: without a preStop hook, and with the built-in preStop sleep.
func testPlainTini(t *testing.T, c *cluster, row func(string, loaded)) {
	for _, v := range []struct {
		name  string
		sleep int
	}{{"tini", 0}, {"tini-sleep", 5}} {
		c.apply(t, tiniDeployment(v.name, v.sleep))
		selector := "app=" + v.name
		c.settled(t, selector, 3)
		l := c.underLoad(t, c.serviceURL(t, v.name), func() {
			c.must(t, "rollout", "restart", "deployment/"+v.name)
			c.must(t, "rollout", "status", "deployment/"+v.name, "--timeout=3m")
			c.settled(t, selector, 3)
		})
		what := "tini, no preStop: kubectl rollout restart"
		if v.sleep > 0 {
			what = fmt.Sprintf("tini, preStop sleep %ds: kubectl rollout restart", v.sleep)
		}
		row(what, l)
		t.Logf("%s: %d of %d failed; first failures:\n%s", what, l.failed, l.sent, l.errs)
		c.must(t, "delete", "deployment/"+v.name, "service/"+v.name)
	}
}

// tiniDeployment is a Deployment of 3 and its Service for tiniImage: a readiness probe, and a
// preStop sleep (Kubernetes' own sleep action, no shell needed) when sleep > 0.
func tiniDeployment(name string, sleep int) string {
	prestop := ""
	if sleep > 0 {
		prestop = fmt.Sprintf("\n          lifecycle: {preStop: {sleep: {seconds: %d}}}", sleep)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: 3
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
        - name: app
          image: %[2]s
          imagePullPolicy: Never
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 2, failureThreshold: 1}%[3]s
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 80, targetPort: http}]
`, name, tiniImage, prestop)
}

// testWatchedConfig: a changed ConfigMap mounted through watchedConfig reaches the pods through
// the kubelet's atomic swap; narwhal rolls its workers, no request fails, no pod restarts.
func testWatchedConfig(t *testing.T, c *cluster, row func(string, loaded)) {
	configMap := func(greeting string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config}\ndata: {greeting: " + greeting + "}\n"
	}
	c.apply(t, configMap("one"))
	c.apply(t, render(t, chartValues(map[string]any{"replicaCount": 3,
		"watchedConfig": []any{map[string]any{"configMap": "app-config", "mountPath": "/etc/app"}}})).raw)
	c.settled(t, chartPods, 3)
	before := c.pods(t, chartPods)
	url := c.serviceURL(t, "narwhal")
	l := c.underLoad(t, url, func() {
		c.apply(t, configMap("two"))
		for _, p := range before {
			if !e2e.Eventually(2*time.Minute, func() bool { return c.logs(t, p, `"event":"rollout_completed"`) > 0 }) {
				t.Fatalf("pod %s never rolled its workers after the ConfigMap changed", p.Name)
			}
		}
	})
	row("narwhal chart: ConfigMap changed (watchedConfig)", l)
	if l.failed != 0 {
		t.Errorf("%d of %d requests failed while the pods rolled for the new ConfigMap:\n%s", l.failed, l.sent, l.errs)
	}
	after := c.pods(t, chartPods)
	for i, p := range before {
		if len(after) != len(before) || after[i].UID != p.UID || after[i].Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("pods changed or restarted: before %s, after %+v", p.UID, after)
			break
		}
	}
}

// logs counts the lines of a pod's app container's log that contain s.
func (c *cluster) logs(t *testing.T, p corev1.Pod, s string) int {
	t.Helper()
	out, _ := c.kubectl("logs", p.Name, "-c", "app")
	return strings.Count(out, s)
}

// testWorkersFromRequest: workers: auto sizes the pool from the CPU request the scheduler
// placed the pod by (1500m: 2 workers), read through the downward API.
func testWorkersFromRequest(t *testing.T, c *cluster) {
	c.apply(t, render(t, chartValues(map[string]any{"replicaCount": 1,
		"resources": map[string]any{"requests": map[string]any{"cpu": "1500m"}}})).raw)
	c.settled(t, chartPods, 1)
	p := c.pods(t, chartPods)[0]
	if p.Spec.NodeName != nodeName {
		t.Fatalf("pod %s scheduled on %q", p.Name, p.Spec.NodeName)
	}
	var workers string
	url := fmt.Sprintf("http://%s:9090/metrics", p.Status.PodIP)
	e2e.Eventually(30*time.Second, func() bool {
		resp, err := c.http(5 * time.Second).Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if m := regexp.MustCompile(`(?m)^narwhal_workers_desired (\S+)$`).FindStringSubmatch(b.String()); m != nil {
			workers = m[1]
		}
		return workers != ""
	})
	if workers != "2" {
		t.Errorf("narwhal_workers_desired = %q for a CPU request of 1500m, want 2", workers)
	}
}

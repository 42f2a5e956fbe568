// Package deploy tests the Helm chart and the plain manifests. It is its own module so that
// Helm and the Kubernetes API types stay out of narwhal's binary module.
package deploy

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/narwhal-init/narwhal/config"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/narwhal.yaml from the chart's defaults")

const chartDir = "helm/narwhal"

// rendered is one chart rendering, every document decoded strictly into its API type.
type rendered struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	monitor    map[string]any
	raw        string
}

func render(t *testing.T, overrides map[string]any) rendered {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, overrides, chartutil.ReleaseOptions{Name: "narwhal", Namespace: "default", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var r rendered
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(files[name], -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			r.raw += "---\n# Source: " + strings.TrimPrefix(name, "narwhal/") + "\n" + strings.TrimSpace(doc) + "\n"
			var meta struct{ Kind string }
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var into any
			switch meta.Kind {
			case "Deployment":
				r.deployment = &appsv1.Deployment{}
				into = r.deployment
			case "Service":
				r.service = &corev1.Service{}
				into = r.service
			case "PodDisruptionBudget":
				r.pdb = &policyv1.PodDisruptionBudget{}
				into = r.pdb
			case "HorizontalPodAutoscaler":
				r.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
				into = r.hpa
			case "ServiceMonitor":
				r.monitor = map[string]any{}
				into = &r.monitor
			default:
				t.Fatalf("%s: unexpected kind %q", name, meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s (%s) does not decode strictly: %v", name, meta.Kind, err)
			}
		}
	}
	if r.deployment == nil || r.service == nil {
		t.Fatal("no Deployment or Service rendered")
	}
	return r
}

// valueFrom is where the container's variable name takes its value from, if not a literal.
func valueFrom(c corev1.Container, name string) *corev1.EnvVarSource {
	for _, e := range c.Env {
		if e.Name == name {
			return e.ValueFrom
		}
	}
	return nil
}

func env(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func TestDefaults(t *testing.T) {
	r := render(t, nil)
	pod := r.deployment.Spec.Template.Spec
	c := pod.Containers[0]
	vars := env(c)
	for name := range vars {
		if strings.HasPrefix(name, "NARWHAL_") && !slices.Contains(config.Variables(), name) {
			t.Errorf("the chart sets %s, which narwhal does not read", name)
		}
	}
	for name, want := range map[string]string{
		"NARWHAL_WORKERS": "auto", "NARWHAL_LISTEN": ":8080", "NARWHAL_METRICS_ADDR": ":9090",
		"NARWHAL_DRAIN_DELAY": "5s", "NARWHAL_STOP_TIMEOUT": "25s", "NARWHAL_LOG_FORMAT": "json",
	} {
		if vars[name] != want {
			t.Errorf("%s = %q, want %q", name, vars[name], want)
		}
	}
	if ref := valueFrom(c, "NARWHAL_CPUS"); ref == nil || ref.ResourceFieldRef == nil ||
		ref.ResourceFieldRef.Resource != "requests.cpu" || ref.ResourceFieldRef.ContainerName != c.Name {
		t.Errorf("NARWHAL_CPUS comes from %+v, want the container's requests.cpu (downward API)", ref)
	}
	if _, set := vars["NARWHAL_BACKLOG"]; set {
		t.Error("an empty value in values.yaml should leave narwhal's default, not set the variable")
	}
	if got := *pod.TerminationGracePeriodSeconds; got != 5+25+5 {
		t.Errorf("terminationGracePeriodSeconds = %d, want drain 5 + stop 25 + margin 5", got)
	}
	if pre := c.Lifecycle.PreStop.Exec.Command; !slices.Equal(pre, []string{"/narwhal", "--drain"}) {
		t.Errorf("preStop = %v", pre)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/livez", c.ReadinessProbe: "/readyz", c.StartupProbe: "/readyz"} {
		if probe.HTTPGet.Path != path || probe.HTTPGet.Port.StrVal != "metrics" {
			t.Errorf("probe %s on %v, want %s on the metrics port", probe.HTTPGet.Path, probe.HTTPGet.Port, path)
		}
	}
	var metricsPort int32
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			metricsPort = p.ContainerPort
		}
	}
	if metricsPort != 9090 || vars["NARWHAL_METRICS_ADDR"] != fmt.Sprintf(":%d", metricsPort) {
		t.Errorf("metrics port %d, NARWHAL_METRICS_ADDR %q: they must agree", metricsPort, vars["NARWHAL_METRICS_ADDR"])
	}
	ann := r.deployment.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9090" {
		t.Errorf("scrape annotations = %v", ann)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the container's root filesystem should be read-only by default")
	}
	if r.pdb != nil || r.hpa != nil || r.monitor != nil {
		t.Error("PDB, HPA and ServiceMonitor should be off by default")
	}
	if *r.deployment.Spec.Replicas != 2 {
		t.Errorf("replicas = %d", *r.deployment.Spec.Replicas)
	}
}

// TestEveryValueReachesNarwhal: each key under narwhal: becomes its NARWHAL_* variable.
func TestEveryValueReachesNarwhal(t *testing.T) {
	settings := map[string]any{
		"workers": "2-8", "cpus": "1500m", "scaleUpAfter": "2s", "scaleDownAfter": "5m", "listen": ":8000", "backlog": 2048, "socketMode": "reuseport", "ready": "notify",
		"readyDelay": "2s", "readyTimeout": "30s", "rolloutSurge": 2, "workerDir": "/app/current",
		"workerUser": "65533", "workerGroup": "65533", "preStart": "/app/migrate --to latest", "workerOutput": "json", "watch": "/srv/app.yaml", "watchDelay": "5s", "rolloutCanary": "30s",
		"restartDelay": "200ms", "restartDelayMax": "10s", "workerTimeout": "30s", "maxMemory": "512Mi", "memoryBudget": "90%", "memoryMerge": "true", "preload": "true",
		"maxLifetime": "6h", "minReady": 2, "stopSignal": "SIGQUIT", "signalGroup": true,
		"signalRewrite": "TERM:QUIT", "exitRemap": "143:0", "controlSocket": "@app", "logFormat": "text", "logLevel": "debug",
	}
	r := render(t, map[string]any{"narwhal": settings, "drainDelaySeconds": 10, "stopTimeoutSeconds": 60})
	vars := env(r.deployment.Spec.Template.Spec.Containers[0])
	for key, v := range settings {
		name := "NARWHAL_" + strings.ToUpper(regexp.MustCompile(`([a-z])([A-Z])`).ReplaceAllString(key, "${1}_${2}"))
		if !slices.Contains(config.Variables(), name) {
			t.Errorf("values key %s maps to %s, which narwhal does not read", key, name)
		}
		if got := vars[name]; got != fmt.Sprint(v) {
			t.Errorf("%s = %q, want %q", name, got, fmt.Sprint(v))
		}
	}
	// Every variable narwhal reads can be set from the chart.
	for _, name := range config.Variables() {
		if _, ok := vars[name]; !ok {
			t.Errorf("%s cannot be set from values.yaml", name)
		}
	}
	if got := *r.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds; got != 10+60+5 {
		t.Errorf("terminationGracePeriodSeconds = %d, want 75", got)
	}
}

// TestWatchedConfig: each watched ConfigMap or Secret is mounted read-only and its mount path
// joins NARWHAL_WATCH, after the paths of narwhal.watch.
func TestWatchedConfig(t *testing.T) {
	r := render(t, map[string]any{
		"narwhal": map[string]any{"watch": "/srv/extra"},
		"watchedConfig": []any{
			map[string]any{"configMap": "app-config", "mountPath": "/etc/app"},
			map[string]any{"secret": "app-tls", "mountPath": "/etc/tls"},
		},
	})
	spec := r.deployment.Spec.Template.Spec
	c := spec.Containers[0]
	if got := env(c)["NARWHAL_WATCH"]; got != "/srv/extra,/etc/app,/etc/tls" {
		t.Errorf("NARWHAL_WATCH = %q", got)
	}
	if len(spec.Volumes) != 2 || spec.Volumes[0].ConfigMap == nil || spec.Volumes[0].ConfigMap.Name != "app-config" ||
		spec.Volumes[1].Secret == nil || spec.Volumes[1].Secret.SecretName != "app-tls" {
		t.Fatalf("volumes: %+v", spec.Volumes)
	}
	for i, m := range c.VolumeMounts {
		if m.Name != spec.Volumes[i].Name || !m.ReadOnly || m.SubPath != "" {
			t.Errorf("mount %d: %+v", i, m)
		}
	}
	if def := render(t, nil); len(def.deployment.Spec.Template.Spec.Volumes) != 0 || env(def.deployment.Spec.Template.Spec.Containers[0])["NARWHAL_WATCH"] != "" {
		t.Error("by default nothing is mounted or watched")
	}
}

func TestOptionalObjects(t *testing.T) {
	r := render(t, map[string]any{
		"serviceMonitor":      map[string]any{"enabled": true},
		"podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 2},
		"autoscaling":         map[string]any{"enabled": true, "maxReplicas": 7},
		"resources":           map[string]any{"requests": map[string]any{"cpu": "500m"}},
	})
	if r.pdb == nil || r.pdb.Spec.MinAvailable.IntVal != 2 {
		t.Errorf("PDB = %+v", r.pdb)
	}
	if r.hpa == nil || r.hpa.Spec.MaxReplicas != 7 || r.hpa.Spec.ScaleTargetRef.Name != r.deployment.Name {
		t.Errorf("HPA = %+v", r.hpa)
	}
	if r.deployment.Spec.Replicas != nil {
		t.Error("with autoscaling on, the Deployment must leave replicas to the HPA")
	}
	eps, _ := r.monitor["spec"].(map[string]any)["endpoints"].([]any)
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != "metrics" {
		t.Errorf("ServiceMonitor endpoints = %v", eps)
	}
}

// TestAutoscalingNeedsCPURequests: an HPA on CPU utilisation cannot work without CPU requests,
// so the chart refuses to render one.
func TestAutoscalingNeedsCPURequests(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, map[string]any{"autoscaling": map[string]any{"enabled": true}},
		chartutil.ReleaseOptions{Name: "narwhal", Namespace: "default"}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Render(ch, vals); err == nil || !strings.Contains(err.Error(), "resources.requests.cpu") {
		t.Errorf("render with autoscaling and no CPU request: %v, want a failure naming resources.requests.cpu", err)
	}
}

// TestPlainManifests: deploy/kubernetes/narwhal.yaml is the chart rendered with its defaults.
func TestPlainManifests(t *testing.T) {
	r := render(t, nil)
	want := "# Rendered from deploy/helm/narwhal with its default values; regenerate with\n" +
		"#   cd deploy && go test -run TestPlainManifests -update\n" + r.raw
	const path = "kubernetes/narwhal.yaml"
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Errorf("%s is out of date with the chart; run: cd deploy && go test -run TestPlainManifests -update", path)
	}
}

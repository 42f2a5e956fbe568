package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The images that Images builds from the project's Dockerfile.
const (
	ExampleImage = "narwhal-e2e:example" // the Dockerfile's example target
	PlainImage   = "narwhal-e2e:narwhal" // its default target, narwhal alone
)

// DockerTimeout bounds every docker command the tests run.
const DockerTimeout = 60 * time.Second

// RequireDocker skips t (or fails it, when NARWHAL_E2E=required) unless a Docker Engine answers.
func RequireDocker(t T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, "docker", "info").Run(); err != nil {
		if os.Getenv("NARWHAL_E2E") == "required" {
			t.Fatalf("no Docker Engine answers (%v), and NARWHAL_E2E=required", err)
		}
		t.Skipf("no Docker Engine answers: %v", err)
	}
}

// Docker runs one docker command, bounded by DockerTimeout, and returns its trimmed stdout.
func Docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DockerTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), err
}

var (
	imageOnce sync.Once
	imageErr  error
)

// builderStage matches the Dockerfile's golang stage, up to the next FROM.
var builderStage = regexp.MustCompile(`(?ms)^FROM golang:\S+ AS build$.*?^(FROM )`)

// Images builds ExampleImage and PlainImage once per test binary from the project's
// Dockerfile. The engine here has no registry, so the golang builder stage cannot be pulled:
// just that stage is swapped for one that copies binaries built on this machine, and the final
// stages stay exactly as written.
func Images(t T) {
	t.Helper()
	imageOnce.Do(func() { imageErr = buildImages() })
	if imageErr != nil {
		t.Fatal(imageErr)
	}
}

func buildImages() error {
	dir, err := os.MkdirTemp("", "narwhal-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	for out, pkg := range map[string]string{"narwhal": ".", "example-go": "./examples/go"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return err
	}
	if !builderStage.Match(df) {
		return fmt.Errorf("the Dockerfile has no 'FROM golang:… AS build' stage to stand in for")
	}
	swapped := builderStage.ReplaceAll(df, []byte("FROM scratch AS build\nCOPY narwhal example-go /out/\n\n$1"))
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), swapped, 0o644); err != nil {
		return err
	}
	if _, err := Docker("build", "-q", "--target", "narwhal", "-t", PlainImage, dir); err != nil {
		return err
	}
	_, err = Docker("build", "-q", "--target", "example", "-t", ExampleImage, dir)
	return err
}

// RepoRoot is the directory of narwhal's own module, found upward from the working directory,
// so that tests in the deploy module find it too.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; d != "/"; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/narwhal-init/narwhal\n")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("no narwhal module above %s", dir)
}

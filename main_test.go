package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/narwhal-init/narwhal/config"
)

// TestDocsVariablesMatchHelp: the table of variables in docs/configuration.md says what --help
// says, row for row, so the documentation cannot drift from the code.
func TestDocsVariablesMatchHelp(t *testing.T) {
	var help bytes.Buffer
	if err := config.WriteHelp(&help); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(help.String()), "\n")[1:] {
		cols := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), 4)
		want = append(want, strings.Join(cols, " | "))
	}
	page, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut("\n"+string(page), "\n# Configuration\n")
	if !ok {
		t.Fatal("docs/configuration.md has no Configuration heading")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var got []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `NARWHAL_") {
			continue
		}
		row := strings.Trim(line, "| ")
		row = strings.ReplaceAll(row, "\\|", "\x00")
		parts := strings.Split(row, " | ")
		for i := range parts {
			parts[i] = strings.Trim(strings.ReplaceAll(parts[i], "\x00", "|"), "` ")
		}
		got = append(got, strings.Join(parts, " | "))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("docs/configuration.md's variables table differs from --help.\ndocs:\n%s\n\n--help:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDocsLinks: every relative link in README.md and docs/*.md names a file of the repository
// and, after a '#', a heading of that file (GitHub's anchor: lowercase, spaces to '-', other
// punctuation but '-' and '_' dropped).
func TestDocsLinks(t *testing.T) {
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading := regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
	anchors := func(path string) map[string]bool {
		text, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		out := map[string]bool{}
		for _, h := range heading.FindAllStringSubmatch(string(text), -1) {
			out[strings.Map(func(r rune) rune {
				switch {
				case r == ' ':
					return '-'
				case r == '-', r == '_', unicode.IsLetter(r), unicode.IsDigit(r):
					return unicode.ToLower(r)
				}
				return -1
			}, h[1])] = true
		}
		return out
	}
	for _, page := range append([]string{"README.md"}, pages...) {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(text), -1) {
			target, anchor, _ := strings.Cut(m[1], "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				t.Errorf("%s: link %s leaves the repository", page, m[1])
				continue
			}
			path := page
			if target != "" {
				path = filepath.Join(filepath.Dir(page), target)
			}
			if rel, err := filepath.Rel(".", path); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s: link %s leaves the repository", page, m[1])
				continue
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %s: %v", page, m[1], err)
				continue
			}
			if anchor != "" && !anchors(path)[anchor] {
				t.Errorf("%s: link %s: no heading in %s makes #%s", page, m[1], path, anchor)
			}
		}
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		action string
		argv   []string
		err    bool
	}{
		{[]string{"node", "app.js"}, "", []string{"node", "app.js"}, false},
		{[]string{"--", "-weird"}, "", []string{"-weird"}, false},
		{[]string{"--help"}, "--help", nil, false},
		{[]string{"--drain"}, "--drain", nil, false},
		{[]string{"--check-config", "node", "app.js"}, "--check-config", nil, false},
		{nil, "", nil, true},
		{[]string{"--"}, "", nil, true},
		{[]string{"-h"}, "", nil, true},
		{[]string{"--status", "x"}, "", nil, true},
	} {
		action, argv, err := parseArgs(tc.args)
		if (err != nil) != tc.err || action != tc.action || strings.Join(argv, " ") != strings.Join(tc.argv, " ") {
			t.Errorf("parseArgs(%q) = %q, %q, %v", tc.args, action, argv, err)
		}
	}
}

// TestClientIgnoresTheRest: --status, --drain and --healthcheck read NARWHAL_CONTROL_SOCKET
// alone. A preStop --drain must reach the running narwhal even while the environment holds
// something Load would refuse at that moment (a release directory or a watched file missing
// during a deploy): here it finds nobody listening (1), not a configuration error (78).
func TestClientIgnoresTheRest(t *testing.T) {
	t.Setenv("NARWHAL_CONTROL_SOCKET", "@narwhal-test-nobody-"+strconv.Itoa(os.Getpid()))
	t.Setenv("NARWHAL_WORKERS", "2")
	t.Setenv("NARWHAL_WORKER_DIR", "/no/such/release")
	t.Setenv("NARWHAL_WATCH", "/no/such/config")
	for _, action := range []string{"--status", "--healthcheck"} {
		if code := run([]string{action}); code != 1 {
			t.Errorf("%s with an unrelated variable Load refuses: exit %d, want 1 (nobody answers)", action, code)
		}
	}
	t.Setenv("NARWHAL_CONTROL_SOCKET", "@")
	if code := run([]string{"--status"}); code != 78 {
		t.Errorf("--status with NARWHAL_CONTROL_SOCKET=@: exit %d, want 78", code)
	}
}

package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/narwhal-init/narwhal/config"
)

// TestReadmeVariablesMatchHelp: the README's table of variables says what --help says, row for
// row, so the documentation cannot drift from the code.
func TestReadmeVariablesMatchHelp(t *testing.T) {
	var help bytes.Buffer
	if err := config.WriteHelp(&help); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(help.String()), "\n")[1:] {
		cols := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), 4)
		want = append(want, strings.Join(cols, " | "))
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
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
		t.Errorf("README's variables table differs from --help.\nREADME:\n%s\n\n--help:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
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

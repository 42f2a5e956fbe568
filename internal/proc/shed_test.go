package proc

import (
	"fmt"
	"os"
	"slices"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := `00400000-00652000 r-xp 00000000 08:01 1234 /usr/bin/narwhal
00652000-008fa000 r--p 00252000 08:01 1234 /usr/bin/narwhal
008fa000-00930000 rw-p 004fa000 08:01 1234 /usr/bin/narwhal
00930000-00970000 rw-p 00000000 00:00 0
c000000000-c000400000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 08:01 99 /usr/bin/narwhal-other
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
`
	got := readOnlyMappings(maps, "/usr/bin/narwhal")
	want := [][2]uintptr{{0x400000, 0x652000}, {0x652000, 0x8fa000}}
	if !slices.Equal(got, want) {
		t.Errorf("read-only mappings = %x, want %x (never the writable data, never another file)", got, want)
	}
	if got := readOnlyMappings(maps, "/usr/bin/narwhal (deleted)"); len(got) != 0 {
		t.Errorf("mappings of a path not in the table: %x", got)
	}
	deleted := "00400000-00652000 r-xp 00000000 08:01 1234 /tmp/a b (deleted)\n"
	if got := readOnlyMappings(deleted, "/tmp/a b (deleted)"); len(got) != 1 {
		t.Errorf("a path with spaces: %x", got)
	}
}

// TestShedExecutable: the test binary lets go of its code's pages, and running on (the reads
// above and the checks below) faults back only part of them.
func TestShedExecutable(t *testing.T) {
	resident := func() int {
		b, err := os.ReadFile("/proc/self/statm")
		if err != nil {
			t.Skip(err)
		}
		var size, rss int
		if _, err := fmt.Sscan(string(b), &size, &rss); err != nil {
			t.Fatal(err)
		}
		return rss * os.Getpagesize()
	}
	before := resident()
	shed, err := ShedExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := resident()
	if shed == 0 || after >= before {
		t.Errorf("shed %d bytes: resident %d before, %d after", shed, before, after)
	}
}

// Command chatter is a worker that only writes lines, for the tests and the benchmark of
// NARWHAL_WORKER_OUTPUT. It says READY=1, writes its lines to stdout as fast as it can, one
// write(2) per line as a logger does, then "chatter done" to stderr, and waits for a signal.
//
// Line seq of the worker in slot S is, in text, "slot=S seq=000042 " padded with one letter
// to its size; with -json, {"z":"S","a":42,"m":"<letters>"}, fields deliberately unsorted.
// Either way the letter is 'a'+seq%26, so a reader can tell a whole line from a torn one.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	lines := flag.Int("lines", 1000, "lines to write")
	size := flag.Int("size", 100, "bytes per line, the newline included")
	asJSON := flag.Bool("json", false, "write JSON objects")
	long := flag.Int("long", 0, "then one line of this many bytes (newline included)")
	crash := flag.Int("crash", -1, "then write a stack trace to stderr, its last line unfinished, and exit with this code")
	orphan := flag.Bool("orphan", false, "first start a child that holds stdout and stderr open after chatter exits")
	flag.Parse()

	if fd, err := strconv.Atoi(os.Getenv("NARWHAL_NOTIFY_FD")); err == nil {
		unix.Write(fd, []byte("READY=1\n"))
	}
	slot := os.Getenv("NARWHAL_WORKER_ID")
	if *orphan {
		child := exec.Command("sleep", "120")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			os.Exit(4)
		}
	}
	for seq := range *lines {
		write(1, line(slot, seq, *size, *asJSON))
	}
	if *long > 0 {
		write(1, line(slot, *lines, *long, false))
	}
	if *crash >= 0 {
		write(2, []byte("Traceback (most recent call last):\n  File \"app.py\", line 1, in <module>\n"))
		write(2, []byte("RuntimeError: last words of slot "+slot))
		os.Exit(*crash)
	}
	write(2, []byte("chatter done\n"))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGTERM, unix.SIGINT)
	<-stop
}

// Line is line seq of slot, size bytes with its newline.
func line(slot string, seq, size int, asJSON bool) []byte {
	letter := string(rune('a' + seq%26))
	head, tail := fmt.Sprintf("slot=%s seq=%06d ", slot, seq), "\n"
	if asJSON {
		head, tail = fmt.Sprintf(`{"z":%q,"a":%d,"m":"`, slot, seq), "\"}\n"
	}
	pad := max(size-len(head)-len(tail), 0)
	return []byte(head + strings.Repeat(letter, pad) + tail)
}

// write is one write(2), as a logger makes; a short write goes on with the rest.
func write(fd int, b []byte) {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			os.Exit(3)
		}
		b = b[n:]
	}
}

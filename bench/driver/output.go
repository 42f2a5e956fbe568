package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/internal/proc"
)

// outputCase is one row of the worker-output benchmark.
type outputCase struct {
	size  int    // bytes per line, the newline included
	lines int    // per worker
	sink  string // "file", or "pipe" (read by cat)
	mode  string // NARWHAL_WORKER_OUTPUT
	json  bool   // the workers write JSON objects rather than plain text
}

// outputResult is the median of a case's runs.
type outputResult struct {
	seconds, cpu float64 // wall time until every worker has written all, narwhal's CPU time
	peakRSS      int64
}

const outputWorkers = 4

// output measures NARWHAL_WORKER_OUTPUT: four workers (internal/e2e/chatter, one write(2) per
// line, as a logger makes) write as fast as they can, to a file and to a pipe read by cat,
// with narwhal passing their fds down (inherit) or labelling every line (json, text).
func output(root string, args []string) {
	fs := flag.NewFlagSet("output", flag.ExitOnError)
	runs := fs.Int("runs", 3, "runs per row; the table shows medians")
	fs.Parse(args)
	chatter := filepath.Join(root, "bin", "chatter")
	for _, size := range []int{100, 8 << 10} {
		lines := 1_000_000
		if size > 100 {
			lines = 50_000
		}
		fmt.Printf("### %d-byte lines, %s per worker\n\n", size, thousands(lines))
		fmt.Println("| sink | NARWHAL_WORKER_OUTPUT | workers write | lines/s | MB/s | of inherit | narwhal CPU s per million lines | narwhal peak RSS MiB |")
		fmt.Println("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
		for _, sink := range []string{"file", "pipe"} {
			var base float64
			for _, c := range []outputCase{
				{size, lines, sink, "inherit", false},
				{size, lines, sink, "json", false},
				{size, lines, sink, "json", true},
				{size, lines, sink, "text", false},
			} {
				var results []outputResult
				for range *runs {
					res, err := outputRun(root, chatter, c)
					if err != nil {
						log.Fatalf("%+v: %v", c, err)
					}
					results = append(results, res)
				}
				res := outputMedian(results)
				total := float64(outputWorkers * c.lines)
				rate := total / res.seconds
				if c.mode == "inherit" {
					base = rate
				}
				what := "text"
				if c.json {
					what = "JSON objects"
				}
				fmt.Printf("| %s | %s | %s | %s | %.0f | %.0f%% | %.2f | %.1f |\n", c.sink, c.mode, what, thousands(int(rate)),
					rate*float64(c.size)/1e6, 100*rate/base, res.cpu/(total/1e6), float64(res.peakRSS)/(1<<20))
			}
		}
		fmt.Println()
	}
}

// outputRun runs narwhal once over the case and checks that every line came out.
func outputRun(root, chatter string, c outputCase) (outputResult, error) {
	var res outputResult
	tmp, err := os.MkdirTemp("", "narwhal-output-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)

	args := []string{chatter, "-lines", strconv.Itoa(c.lines), "-size", strconv.Itoa(c.size)}
	if c.json {
		args = append(args, "-json")
	}
	cmd := exec.Command(filepath.Join(root, "bin", "narwhal"), args...)
	cmd.Env = append(os.Environ(), "NARWHAL_WORKERS="+strconv.Itoa(outputWorkers), "NARWHAL_METRICS_ADDR=off",
		"NARWHAL_READY=notify", "NARWHAL_LOG_FORMAT=json", "NARWHAL_WORKER_OUTPUT="+c.mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return res, err
	}
	var sink *exec.Cmd
	outPath := filepath.Join(tmp, "stdout")
	if c.sink == "file" {
		f, err := os.Create(outPath)
		if err != nil {
			return res, err
		}
		defer f.Close()
		cmd.Stdout = f
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return res, err
		}
		sink = exec.Command("cat")
		sink.Stdin = r // cat's stdout is /dev/null
		if err := sink.Start(); err != nil {
			return res, err
		}
		r.Close()
		defer w.Close()
		cmd.Stdout = w
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	done := make(chan struct{})
	go func() {
		sc, n := bufio.NewScanner(stderr), 0
		for sc.Scan() {
			if strings.Contains(sc.Text(), "chatter done") {
				if n++; n == outputWorkers {
					close(done)
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return res, errors.New("the workers did not finish writing within 2 minutes")
	}
	res.seconds = time.Since(start).Seconds()
	pid := cmd.Process.Pid
	if st, ok := proc.Host.Snapshot().Stat(pid); ok {
		res.cpu = st.CPUSeconds()
	}
	res.peakRSS, _ = proc.Host.PeakRSS(pid)

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("narwhal: %v", err)
	}
	if sink != nil {
		cmd.Stdout.(*os.File).Close()
		if err := sink.Wait(); err != nil {
			return res, fmt.Errorf("cat: %v", err)
		}
		return res, nil
	}
	n, err := countLines(outPath)
	if want := outputWorkers * c.lines; err == nil && n != want {
		err = fmt.Errorf("%d lines in the file, want %d", n, want)
	}
	return res, err
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf, n := make([]byte, 1<<20), 0
	for {
		k, err := f.Read(buf)
		n += bytes.Count(buf[:k], []byte("\n"))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// outputMedian is the run with the median time, and the median CPU and peak RSS.
func outputMedian(rs []outputResult) outputResult {
	med := func(f func(outputResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	return outputResult{
		seconds: med(func(r outputResult) float64 { return r.seconds }),
		cpu:     med(func(r outputResult) float64 { return r.cpu }),
		peakRSS: int64(med(func(r outputResult) float64 { return float64(r.peakRSS) })),
	}
}

// thousands writes n with commas: 1,234,567.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

package worker

import (
	"golang.org/x/sys/unix"
)

// prSetMemoryMerge and prGetMemoryMerge are PR_SET_MEMORY_MERGE and PR_GET_MEMORY_MERGE
// (Linux 6.4): every anonymous page of the process, now and later, may be merged by ksmd with
// an identical page of any other process so marked.
const (
	prSetMemoryMerge = 67
	prGetMemoryMerge = 68
)

// SetMemoryMerge marks the calling process's memory mergeable; the mark is inherited by its
// children and kept across exec.
func SetMemoryMerge() error { return unix.Prctl(prSetMemoryMerge, 1, 0, 0, 0) }

// MemoryMergeSupported reports whether the kernel has PR_SET_MEMORY_MERGE, by asking for the
// calling process's own mark, which changes nothing.
func MemoryMergeSupported() bool {
	_, err := unix.PrctlRetInt(prGetMemoryMerge, 0, 0, 0, 0)
	return err == nil
}

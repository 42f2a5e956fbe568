package proc

import "golang.org/x/sys/unix"

// The system calls in which a thread waits for a connection, by number on this architecture.
var (
	acceptCalls = map[int]bool{unix.SYS_ACCEPT: true, unix.SYS_ACCEPT4: true}
	pollCalls   = map[int]bool{unix.SYS_POLL: true, unix.SYS_PPOLL: true}
	selectCalls = map[int]bool{unix.SYS_SELECT: true, unix.SYS_PSELECT6: true}
)

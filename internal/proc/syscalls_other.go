//go:build linux && !amd64 && !arm64

package proc

// On other architectures accept detection relies on epoll sets alone.
var acceptCalls, pollCalls, selectCalls = map[int]bool{}, map[int]bool{}, map[int]bool{}

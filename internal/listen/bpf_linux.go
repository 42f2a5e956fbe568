package listen

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The programs that steer a reuseport group's new connections to its live sockets. Each is
// built for one set of live indices and attached in place of the last, which the kernel does
// atomically; a connection never sees half a change.

// bpfInsn is one eBPF instruction (struct bpf_insn).
type bpfInsn struct {
	code byte
	regs byte // dst in the low nibble, src in the high one
	off  int16
	imm  int32
}

func insn(code byte, dst, src byte, off int16, imm int32) bpfInsn {
	return bpfInsn{code: code, regs: dst | src<<4, off: off, imm: imm}
}

const (
	bpfPseudoMapFD = 1
	bpfMapLookup   = 1 // the helper bpf_map_lookup_elem
	bpfAtomic      = 0xc0
	outOfRange     = -1 // an index past the group's end: the kernel falls back to its hash
)

// roundRobin is an eBPF program that hands new connections to idx in turn, counting in the
// one-entry array map counter. Two CPUs may read the same count: the turn is then shared,
// which costs evenness, never a connection.
func roundRobin(counter int, idx []int) []bpfInsn {
	if len(idx) == 0 {
		return []bpfInsn{
			insn(unix.BPF_ALU|unix.BPF_MOV|unix.BPF_K, 0, 0, 0, outOfRange),
			insn(unix.BPF_JMP|unix.BPF_EXIT, 0, 0, 0, 0),
		}
	}
	p := []bpfInsn{
		insn(unix.BPF_ST|unix.BPF_MEM|unix.BPF_W, 10, 0, -4, 0), // key 0 on the stack
		insn(unix.BPF_ALU64|unix.BPF_MOV|unix.BPF_X, 2, 10, 0, 0),
		insn(unix.BPF_ALU64|unix.BPF_ADD|unix.BPF_K, 2, 0, 0, -4),
		insn(unix.BPF_LD|unix.BPF_DW|unix.BPF_IMM, 1, bpfPseudoMapFD, 0, int32(counter)),
		insn(0, 0, 0, 0, 0),
		insn(unix.BPF_JMP|unix.BPF_CALL, 0, 0, 0, bpfMapLookup),
		insn(unix.BPF_ALU64|unix.BPF_MOV|unix.BPF_K, 3, 0, 0, 0),
		insn(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, 0, 3, 0), // no map value: turn 0
		insn(unix.BPF_LDX|unix.BPF_MEM|unix.BPF_W, 3, 0, 0, 0),
		insn(unix.BPF_ALU64|unix.BPF_MOV|unix.BPF_K, 2, 0, 0, 1),
		insn(unix.BPF_STX|bpfAtomic|unix.BPF_W, 0, 2, 0, unix.BPF_ADD),
		insn(unix.BPF_ALU|unix.BPF_MOD|unix.BPF_K, 3, 0, 0, int32(len(idx))),
	}
	for turn, i := range idx[:len(idx)-1] {
		p = append(p,
			insn(unix.BPF_JMP|unix.BPF_JNE|unix.BPF_K, 3, 0, 2, int32(turn)),
			insn(unix.BPF_ALU|unix.BPF_MOV|unix.BPF_K, 0, 0, 0, int32(i)),
			insn(unix.BPF_JMP|unix.BPF_EXIT, 0, 0, 0, 0))
	}
	return append(p,
		insn(unix.BPF_ALU|unix.BPF_MOV|unix.BPF_K, 0, 0, 0, int32(idx[len(idx)-1])),
		insn(unix.BPF_JMP|unix.BPF_EXIT, 0, 0, 0, 0))
}

// newCounter creates the one-entry u32 array map a round-robin program counts in.
func newCounter() (int, error) {
	attr := struct{ mapType, keySize, valueSize, maxEntries, flags uint32 }{
		mapType: unix.BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: 4, maxEntries: 1,
	}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return -1, fmt.Errorf("bpf map: %w", errno)
	}
	return int(fd), nil
}

// loadSocketFilter loads prog as a socket filter program and returns its fd.
func loadSocketFilter(prog []bpfInsn) (int, error) {
	license := []byte("MIT\x00")
	attr := struct {
		progType, insnCnt     uint32
		insns, license        uint64
		logLevel, logSize     uint32
		logBuf                uint64
		kernVersion, progFlag uint32
	}{
		progType: unix.BPF_PROG_TYPE_SOCKET_FILTER, insnCnt: uint32(len(prog)),
		insns: uint64(uintptr(unsafe.Pointer(&prog[0]))), license: uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(prog) // the attribute holds their addresses as integers
	runtime.KeepAlive(license)
	if errno != 0 {
		return -1, fmt.Errorf("bpf program: %w", errno)
	}
	return int(fd), nil
}

// attachRoundRobin makes sock's group hand new connections to idx in turn.
func attachRoundRobin(sock *Socket, counter int, idx []int) error {
	prog, err := loadSocketFilter(roundRobin(counter, idx))
	if err != nil {
		return err
	}
	defer unix.Close(prog) // attached, the group holds the program
	return unix.SetsockoptInt(sock.fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, prog)
}

// attachRandom attaches a classic BPF program, which needs no privilege, that returns one of
// idx at random.
func attachRandom(sock *Socket, idx []int) error {
	const (
		ldRandom = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		modK     = unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K
		jeqK     = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		retK     = unix.BPF_RET | unix.BPF_K
		// SKF_AD_OFF + SKF_AD_RANDOM: a load from there reads a random number (linux/filter.h).
		random = 0xfffff000 + 56
	)
	var prog []unix.SockFilter
	if len(idx) == 0 {
		prog = []unix.SockFilter{{Code: retK, K: uint32(0xffffffff)}}
	} else {
		prog = []unix.SockFilter{{Code: ldRandom, K: random}, {Code: modK, K: uint32(len(idx))}}
		for turn, i := range idx[:len(idx)-1] {
			prog = append(prog, unix.SockFilter{Code: jeqK, K: uint32(turn), Jt: 0, Jf: 1}, unix.SockFilter{Code: retK, K: uint32(i)})
		}
		prog = append(prog, unix.SockFilter{Code: retK, K: uint32(idx[len(idx)-1])})
	}
	return unix.SetsockoptSockFprog(sock.fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
}

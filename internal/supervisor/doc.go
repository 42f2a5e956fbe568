// Package supervisor is the loop that owns the pool: one goroutine that takes signals, worker
// exits, notify messages, watched changes and the clock as events, applies each to the pool's
// Machine (internal/pool) at one instant, carries out its decisions through one struct of
// effects (start, signal, read /proc), and publishes a snapshot for metrics, health and the
// control socket. Nothing outside the loop touches its state; what flows back is a typed
// request the loop answers.
package supervisor

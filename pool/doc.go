// Package pool runs narwhal's prefork pool: N copies of a command sharing listeners that
// narwhal binds once and keeps for its whole life. Its invariant is the rolling restart's: an
// old worker is asked to stop only once its replacement is ready, so the number of ready
// workers never falls below where a rollout began, and the pool never holds more than
// desired + NARWHAL_ROLLOUT_SURGE processes, counting those still stopping.
//
// Machine is that logic as plain data, driven by events and the clock it is given;
// Supervisor is the one goroutine that owns it and turns its decisions into processes.
package pool

// Package pool is the prefork pool's decisions, as plain data: no system calls, no clock of
// its own, no configuration. N copies of a command share listeners that narwhal binds once and
// keeps for its whole life. Its invariant is the rolling restart's: an
// old worker is asked to stop only once its replacement is ready, so the number of ready
// workers never falls below where a rollout began, and the pool never holds more than
// desired + NARWHAL_ROLLOUT_SURGE workers, counting those still stopping. With preload a
// generation's template is one more process, two while a rollout's boots beside it.
//
// Machine is that logic, driven by events and the clock it is given; Scaler decides the size of
// a ranged pool. The supervisor (internal/supervisor) is the one goroutine that owns them and
// turns their decisions into processes.
package pool

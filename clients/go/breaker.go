package normd

import (
	"sync"
	"time"
)

// breaker is a consecutive-failure circuit breaker. It owns only the state
// machine: no I/O, and time only through the injected clock, so tests drive
// the cooldown without sleeping.
//
//	closed --N consecutive failures--> open --cooldown--> half_open
//	half_open: exactly one probe passes; its success closes, its failure re-opens
//
// A call gets a ticket from acquire and hands it back with its outcome. A
// ticket from before the last open or close (a slow call that was already out
// when the breaker changed state) no longer moves it: a late 200 must not close
// an open breaker without its cooldown and probe.
type breaker struct {
	threshold int
	cooldown  time.Duration
	now       func() time.Duration

	mu          sync.Mutex
	state       BreakerState
	failures    int
	openedTotal uint64
	openedAt    time.Duration
	probeOut    bool
	// epoch is bumped on every open and close, so older tickets go stale.
	epoch uint64
}

// BreakerState is "closed", "open" or "half_open".
type BreakerState string

// The breaker's states, as Stats reports them.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half_open"
)

type ticket struct {
	epoch uint64
	probe bool
}

func newBreaker(threshold int, cooldown time.Duration, now func() time.Duration) *breaker {
	return &breaker{threshold: threshold, cooldown: cooldown, now: now, state: BreakerClosed}
}

// acquire asks to send one call; false means short-circuit in-app.
func (b *breaker) acquire() (ticket, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		return ticket{epoch: b.epoch}, true
	case BreakerOpen:
		if b.now()-b.openedAt < b.cooldown {
			return ticket{}, false
		}
		b.state = BreakerHalfOpen
		b.probeOut = false
	}
	if b.probeOut {
		return ticket{}, false
	}
	b.probeOut = true
	return ticket{epoch: b.epoch, probe: true}, true
}

// success: normd answered sanely (200, a contract error, 503 disabled).
func (b *breaker) success(t ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.epoch != b.epoch {
		return
	}
	switch {
	case b.state == BreakerClosed:
		b.failures = 0
	case b.state == BreakerHalfOpen && t.probe:
		b.failures = 0
		b.probeOut = false
		b.state = BreakerClosed
		b.epoch++
	}
}

// failure: normd failed (overloaded, unavailable, deadline, 5xx, connection, timeout).
func (b *breaker) failure(t ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.epoch != b.epoch {
		return
	}
	switch {
	case b.state == BreakerClosed:
		b.failures++
		if b.failures >= b.threshold {
			b.open()
		}
	case b.state == BreakerHalfOpen && t.probe:
		b.failures++
		b.open()
	}
}

// abandon: the call ended with no verdict on normd (its caller cancelled it).
// A probe gives its slot back, so the next call probes instead of the breaker
// staying half-open with nobody out.
func (b *breaker) abandon(t ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.epoch == b.epoch && t.probe && b.state == BreakerHalfOpen {
		b.probeOut = false
	}
}

func (b *breaker) open() {
	b.state = BreakerOpen
	b.openedAt = b.now()
	b.probeOut = false
	b.openedTotal++
	b.epoch++
}

// current is the state as a caller would meet it (open turns half_open
// lazily once the cooldown is over).
func (b *breaker) current() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.currentLocked()
}

func (b *breaker) currentLocked() BreakerState {
	if b.state == BreakerOpen && b.now()-b.openedAt >= b.cooldown {
		return BreakerHalfOpen
	}
	return b.state
}

func (b *breaker) snapshot() BreakerStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BreakerStats{State: b.currentLocked(), ConsecutiveFailures: b.failures, OpenedTotal: b.openedTotal}
}

package normd

import (
	"testing"
	"time"
)

func newTestBreaker(threshold int) (*breaker, *manualClock) {
	clk := &manualClock{}
	return newBreaker(threshold, 5*time.Second, clk.Now), clk
}

func mustAcquire(t *testing.T, b *breaker) ticket {
	t.Helper()
	tk, ok := b.acquire()
	if !ok {
		t.Fatalf("breaker refused a call in state %s", b.current())
	}
	return tk
}

func TestBreakerOpensAfterConsecutiveFailuresOnly(t *testing.T) {
	b, _ := newTestBreaker(3)
	b.failure(mustAcquire(t, b))
	b.failure(mustAcquire(t, b))
	b.success(mustAcquire(t, b))
	b.failure(mustAcquire(t, b))
	b.failure(mustAcquire(t, b))
	if s := b.current(); s != BreakerClosed {
		t.Fatalf("after fail fail ok fail fail: %s", s)
	}
	b.failure(mustAcquire(t, b))
	if s := b.snapshot(); s.State != BreakerOpen || s.OpenedTotal != 1 {
		t.Fatalf("after 3 consecutive failures: %+v", s)
	}
	if _, ok := b.acquire(); ok {
		t.Fatal("open breaker let a call through")
	}
}

func TestBreakerHalfOpenLetsOneProbeAndItsSuccessCloses(t *testing.T) {
	b, clk := newTestBreaker(1)
	b.failure(mustAcquire(t, b))
	clk.advance(5*time.Second - 1)
	if _, ok := b.acquire(); ok {
		t.Fatal("a call went through before the cooldown ended")
	}
	clk.advance(1)
	probe := mustAcquire(t, b)
	if _, ok := b.acquire(); ok {
		t.Fatal("a second call went through while the probe is out")
	}
	b.success(probe)
	if s := b.current(); s != BreakerClosed {
		t.Fatalf("after a good probe: %s", s)
	}
	mustAcquire(t, b)
	mustAcquire(t, b)
}

func TestBreakerFailedProbeReopensForAWholeCooldown(t *testing.T) {
	b, clk := newTestBreaker(1)
	b.failure(mustAcquire(t, b))
	clk.advance(5 * time.Second)
	b.failure(mustAcquire(t, b))
	if s := b.snapshot(); s.State != BreakerOpen || s.OpenedTotal != 2 {
		t.Fatalf("after a failed probe: %+v", s)
	}
	clk.advance(4 * time.Second)
	if _, ok := b.acquire(); ok {
		t.Fatal("re-opened breaker let a call through before its new cooldown")
	}
}

func TestBreakerStaleTicketsDoNotMoveIt(t *testing.T) {
	b, clk := newTestBreaker(1)
	slow := mustAcquire(t, b)    // out while the breaker opens
	b.failure(mustAcquire(t, b)) // opens
	b.success(slow)              // a late 200 must not close it
	if s := b.current(); s != BreakerOpen {
		t.Fatalf("a late success moved an open breaker to %s", s)
	}
	clk.advance(5 * time.Second)
	probe := mustAcquire(t, b)
	b.success(probe)
	b.failure(slow) // a late failure must not re-open what the probe closed
	if s := b.current(); s != BreakerClosed {
		t.Fatalf("a late failure moved a closed breaker to %s", s)
	}
}

func TestBreakerAbandonedProbeFreesTheSlot(t *testing.T) {
	b, clk := newTestBreaker(1)
	b.failure(mustAcquire(t, b))
	clk.advance(5 * time.Second)
	b.abandon(mustAcquire(t, b))
	if s := b.current(); s != BreakerHalfOpen {
		t.Fatalf("after an abandoned probe: %s", s)
	}
	b.success(mustAcquire(t, b))
	if s := b.current(); s != BreakerClosed {
		t.Fatalf("after the next probe: %s", s)
	}
}

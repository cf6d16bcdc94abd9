package dev.normd.client;

import dev.normd.testing.Check;
import dev.normd.testing.Registry;
import dev.normd.testing.Suite;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

public final class BreakerTest implements Suite {
    private static final long COOLDOWN = TimeUnit.SECONDS.toNanos(5);

    @Override
    public void register(Registry t) {
        t.test("opens after N consecutive failures; a success in between resets the count", () -> {
            AtomicLong now = new AtomicLong();
            CircuitBreaker b = new CircuitBreaker(3, COOLDOWN, now::get);
            b.onFailure(b.tryAcquire());
            b.onFailure(b.tryAcquire());
            b.onSuccess(b.tryAcquire());
            b.onFailure(b.tryAcquire());
            b.onFailure(b.tryAcquire());
            Check.eq(CircuitBreaker.State.CLOSED, b.snapshot().state(), "two failures after a success");
            b.onFailure(b.tryAcquire());
            Check.eq(CircuitBreaker.State.OPEN, b.snapshot().state(), "third in a row opens");
            Check.eq(CircuitBreaker.SHORT_CIRCUIT, b.tryAcquire(), "open short-circuits");
            Check.eq(1L, b.snapshot().openedTotal(), "opened once");
        });
        t.test("after the cooldown exactly one probe; its success closes", () -> {
            AtomicLong now = new AtomicLong(1_000);
            CircuitBreaker b = new CircuitBreaker(1, COOLDOWN, now::get);
            b.onFailure(b.tryAcquire());
            now.addAndGet(COOLDOWN - 1);
            Check.eq(CircuitBreaker.SHORT_CIRCUIT, b.tryAcquire(), "1 ns before the cooldown ends");
            now.addAndGet(1);
            Check.eq(CircuitBreaker.State.HALF_OPEN, b.snapshot().state(), "reads half_open at the cooldown");
            long probe = b.tryAcquire();
            Check.that(probe != CircuitBreaker.SHORT_CIRCUIT, "the probe passes");
            Check.eq(CircuitBreaker.SHORT_CIRCUIT, b.tryAcquire(), "a second caller does not");
            Check.that(!b.isClosed(), "not closed while the probe is out");
            b.onSuccess(probe);
            Check.eq(CircuitBreaker.State.CLOSED, b.snapshot().state(), "closed by the probe");
            Check.that(b.tryAcquire() != CircuitBreaker.SHORT_CIRCUIT, "calls flow again");
        });
        t.test("a failed probe re-opens for a fresh cooldown", () -> {
            AtomicLong now = new AtomicLong();
            CircuitBreaker b = new CircuitBreaker(1, COOLDOWN, now::get);
            b.onFailure(b.tryAcquire());
            now.addAndGet(COOLDOWN);
            b.onFailure(b.tryAcquire());
            Check.eq(CircuitBreaker.State.OPEN, b.snapshot().state(), "re-opened");
            Check.eq(2L, b.snapshot().openedTotal(), "opened twice");
            now.addAndGet(COOLDOWN - 1);
            Check.eq(CircuitBreaker.SHORT_CIRCUIT, b.tryAcquire(), "the new cooldown counts from the re-open");
        });
        t.test("a call out when the breaker opened does not move it when it ends", () -> {
            AtomicLong now = new AtomicLong();
            CircuitBreaker b = new CircuitBreaker(2, COOLDOWN, now::get);
            long slow = b.tryAcquire();
            b.onFailure(b.tryAcquire());
            b.onFailure(b.tryAcquire());
            Check.eq(CircuitBreaker.State.OPEN, b.snapshot().state(), "open");
            b.onSuccess(slow);
            Check.eq(CircuitBreaker.State.OPEN, b.snapshot().state(), "a late 200 does not close it");
            now.addAndGet(COOLDOWN);
            long probe = b.tryAcquire();
            b.onSuccess(probe);
            b.onFailure(slow);
            Check.eq(0, b.snapshot().consecutiveFailures(), "a late failure does not count after the close");
        });
        t.test("nonsense settings are refused", () -> {
            Check.throwsA(IllegalArgumentException.class, () -> new CircuitBreaker(0, COOLDOWN, System::nanoTime));
            Check.throwsA(IllegalArgumentException.class, () -> new CircuitBreaker(1, -1, System::nanoTime));
        });
    }
}

package dev.normd.client;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ClosedChannelException;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;

/**
 * normd's Unix socket with a small bounded pool of keep-alive connections: at most
 * {@code maxConnections} at once (a caller past that waits for one, inside its deadline),
 * idle ones reused newest first and dropped after {@code idleTimeout}, before normd's own
 * header-read timeout (10 s) closes them from its side.
 */
final class UnixTransport implements Transport {
    private final UnixDomainSocketAddress address;
    private final Semaphore permits;
    private final long idleTimeoutNanos;
    private final long maxResponseBytes;
    private final LongAdder retries;

    /** Idle connections, newest last. Guarded by itself. */
    private final ArrayDeque<UnixConnection> idle = new ArrayDeque<>();
    /** Every open connection, idle or in use, so close() can end calls still out. */
    private final Set<UnixConnection> open = ConcurrentHashMap.newKeySet();
    private volatile boolean closed;

    UnixTransport(Path socket, int maxConnections, long idleTimeoutNanos, long maxResponseBytes, LongAdder retries) {
        this.address = UnixDomainSocketAddress.of(socket);
        this.permits = new Semaphore(maxConnections);
        this.idleTimeoutNanos = idleTimeoutNanos;
        this.maxResponseBytes = maxResponseBytes;
        this.retries = retries;
    }

    @Override
    public String name() {
        return "unix";
    }

    @Override
    public Reply exchange(Request request, long deadlineNanos) throws IOException {
        acquire(deadlineNanos);
        try {
            UnixConnection c = takeIdle();
            boolean reused = c != null;
            if (c == null) c = connect(deadlineNanos);
            try {
                return exchangeOn(c, request, deadlineNanos, reused);
            } catch (UnixConnection.Stale stale) {
                // normd closed the idle connection before it saw the request: resend once on
                // a fresh one inside the same deadline. Safe, the work is a pure function of the body.
                if (System.nanoTime() >= deadlineNanos) throw new Failure.DeadlinePassed();
                retries.increment();
                return exchangeOn(connect(deadlineNanos), request, deadlineNanos, false);
            }
        } finally {
            permits.release();
        }
    }

    private Reply exchangeOn(UnixConnection c, Request request, long deadlineNanos, boolean reused) throws IOException {
        Reply r;
        try {
            r = c.exchange(request, deadlineNanos, maxResponseBytes, reused);
        } catch (IOException | RuntimeException e) {
            discard(c);
            if (closed && !(e instanceof Failure.DeadlinePassed)) throw new ClosedChannelException();
            throw e;
        }
        if (c.reusable() && !closed) {
            c.idleSince = System.nanoTime();
            synchronized (idle) {
                idle.addLast(c);
            }
            // close() may have drained the pool between the check and the add.
            if (closed) closeIdle();
        } else {
            discard(c);
        }
        return r;
    }

    private void acquire(long deadlineNanos) throws IOException {
        if (closed) throw new ClosedChannelException();
        long left = deadlineNanos - System.nanoTime();
        try {
            if (left <= 0 || !permits.tryAcquire(left, TimeUnit.NANOSECONDS)) throw new Failure.DeadlinePassed();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted while waiting for a connection to normd");
        }
    }

    /** The newest idle connection still young enough, or null. Older ones are closed. */
    private UnixConnection takeIdle() {
        long now = System.nanoTime();
        List<UnixConnection> expired = null;
        UnixConnection c;
        synchronized (idle) {
            c = idle.pollLast();
            if (c != null && now - c.idleSince >= idleTimeoutNanos) {
                // The newest is too old, so all are.
                expired = new ArrayList<>(idle);
                expired.add(c);
                idle.clear();
                c = null;
            }
        }
        if (expired != null) expired.forEach(this::discard);
        return c;
    }

    private UnixConnection connect(long deadlineNanos) throws IOException {
        UnixConnection c = UnixConnection.open(address, deadlineNanos);
        open.add(c);
        if (closed) {
            discard(c);
            throw new ClosedChannelException();
        }
        return c;
    }

    private void discard(UnixConnection c) {
        open.remove(c);
        c.close();
    }

    private void closeIdle() {
        List<UnixConnection> all;
        synchronized (idle) {
            all = new ArrayList<>(idle);
            idle.clear();
        }
        all.forEach(this::discard);
    }

    /** Closes every connection, idle or in use: calls still out fail as closed connections. */
    @Override
    public void close() {
        closed = true;
        closeIdle();
        for (UnixConnection c : open) discard(c);
    }
}

package dev.normd.demo;

import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;

/**
 * Latency histogram in microseconds, constant memory: exact below 1024 µs, then 512
 * sub-buckets per power of two (within 0.2 %), up to ~2^40 µs. Lock-free record.
 */
final class Histogram {
    private static final int LINEAR = 1024;
    private static final int SUB = 512;
    private static final int OCTAVES = 31;
    private final AtomicLongArray counts = new AtomicLongArray(LINEAR + OCTAVES * SUB);
    private final LongAdder total = new LongAdder();
    private final LongAdder sum = new LongAdder();
    private volatile long max;

    void record(long micros) {
        if (micros < 0) micros = 0;
        counts.incrementAndGet(index(micros));
        total.increment();
        sum.add(micros);
        long m = max;
        while (micros > m) {
            m = max;
            if (micros > m) {
                synchronized (this) {
                    if (micros > max) max = micros;
                }
            }
        }
    }

    private static int index(long v) {
        if (v < LINEAR) return (int) v;
        int e = 63 - Long.numberOfLeadingZeros(v) - 9; // v >> e in [512, 1024)
        int i = LINEAR + (e - 1) * SUB + (int) ((v >> e) - SUB);
        return Math.min(i, LINEAR + OCTAVES * SUB - 1);
    }

    /** Upper edge of a bucket, in µs (the value reported for a percentile in it). */
    private static long value(int i) {
        if (i < LINEAR) return i;
        int e = (i - LINEAR) / SUB + 1;
        long sub = (i - LINEAR) % SUB + SUB;
        return ((sub + 1) << e) - 1;
    }

    long count() {
        return total.sum();
    }

    long max() {
        return max;
    }

    double meanMicros() {
        long n = total.sum();
        return n == 0 ? 0 : (double) sum.sum() / n;
    }

    long percentile(double p) {
        long n = 0;
        int len = counts.length();
        long[] snap = new long[len];
        for (int i = 0; i < len; i++) {
            snap[i] = counts.get(i);
            n += snap[i];
        }
        if (n == 0) return 0;
        long rank = (long) Math.ceil(p / 100.0 * n);
        long seen = 0;
        for (int i = 0; i < len; i++) {
            seen += snap[i];
            if (seen >= rank) return Math.min(value(i), max);
        }
        return max;
    }

    void reset() {
        for (int i = 0; i < counts.length(); i++) counts.set(i, 0);
        total.reset();
        sum.reset();
        max = 0;
    }
}

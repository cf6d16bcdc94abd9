package dev.normd.demo;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The business working set: the most recent orders, least recently used evicted first,
 * bounded by an estimate of their bytes. Entries live for tens of seconds under load, so
 * they are promoted to the old generation and die there: the heap G1 has to manage in a
 * service that keeps state, not an empty one.
 */
final class OrderCache {
    /** One stored order. {@code stored} is the gzip of its canonical form (either path's). */
    record Entry(String key, String digest, long canonicalBytes, byte[] stored, long receivedAtMillis, boolean viaNormd) {
        long weight() {
            // array + header + record + strings + map node, roughly
            return stored.length + 16 + 48 + 2L * (key.length() + digest.length()) + 80 + 64;
        }
    }

    private final long budget;
    private long bytes;
    private long evictions;
    private final LinkedHashMap<String, Entry> map = new LinkedHashMap<>(1024, 0.75f, true) {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Entry> eldest) {
            return false; // eviction by weight, below
        }
    };

    OrderCache(long budgetBytes) {
        this.budget = budgetBytes;
    }

    synchronized void put(Entry e) {
        Entry old = map.put(e.key(), e);
        if (old != null) bytes -= old.weight();
        bytes += e.weight();
        var it = map.values().iterator();
        while (bytes > budget && it.hasNext()) {
            Entry victim = it.next();
            if (victim == e) break;
            it.remove();
            bytes -= victim.weight();
            evictions++;
        }
    }

    synchronized Entry get(String key) {
        return map.get(key);
    }

    synchronized long[] stats() {
        return new long[] {map.size(), bytes, evictions, budget};
    }
}

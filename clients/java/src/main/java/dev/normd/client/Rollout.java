package dev.normd.client;

import java.nio.charset.StandardCharsets;

/**
 * Sticky rollout: a key always lands in the same bucket 0..99, so raising a percentage
 * only adds keys and a given order or user never flaps between normd and in-app.
 *
 * <p>The hash is FNV-1a 32-bit over the key's UTF-8 bytes, taken mod 100 as an
 * <em>unsigned</em> number (Java's {@code int} is signed: {@code h % 100} would give
 * negative buckets for half the keys). Every normd client computes the same split:
 * {@code h = 0x811c9dc5; for each byte b: h = (h ^ b) * 0x01000193 mod 2^32}.
 */
public final class Rollout {
    private static final int FNV_OFFSET = 0x811c9dc5;
    private static final int FNV_PRIME = 0x01000193;

    private Rollout() {}

    /** FNV-1a 32 of the UTF-8 bytes, as an unsigned value in a long. */
    public static long fnv1a32(String key) {
        int h = FNV_OFFSET;
        for (byte b : key.getBytes(StandardCharsets.UTF_8)) {
            h ^= (b & 0xff);
            h *= FNV_PRIME; // int overflow is the mod 2^32
        }
        return Integer.toUnsignedLong(h);
    }

    /** The key's bucket, 0..99. */
    public static int bucket(String key) {
        return (int) (fnv1a32(key) % 100);
    }
}

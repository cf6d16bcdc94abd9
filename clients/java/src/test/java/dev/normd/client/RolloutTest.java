package dev.normd.client;

import dev.normd.testing.Check;
import dev.normd.testing.Registry;
import dev.normd.testing.Suite;

public final class RolloutTest implements Suite {
    @Override
    public void register(Registry t) {
        t.test("published FNV-1a 32 vectors", () -> {
            Check.eq(0x811c9dc5L, Rollout.fnv1a32(""), "empty");
            Check.eq(0xe40c292cL, Rollout.fnv1a32("a"), "a");
            Check.eq(0xbf9cf968L, Rollout.fnv1a32("foobar"), "foobar");
        });
        t.test("buckets are unsigned: a hash >= 2^31 still lands in 0..99", () -> {
            // "order-1000" hashes to 2456764191 (the kit's rollout.json): as a signed int that is negative
            Check.eq(2456764191L, Rollout.fnv1a32("order-1000"), "hash");
            Check.eq(91, Rollout.bucket("order-1000"), "bucket");
        });
    }
}

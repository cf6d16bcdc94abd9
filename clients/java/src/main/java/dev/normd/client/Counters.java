package dev.normd.client;

import java.util.EnumMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.BiConsumer;

/**
 * Every counter of the client, each named once here by its dotted name in the
 * conformance kit's vocabulary; {@link NormdClient#forEachCounter} and {@link Stats} are
 * derived from this table. LongAdders: concurrent callers never contend on one cache line.
 */
final class Counters {
    enum Name {
        CALLS("calls"),
        NORMD_OK("normd_ok"),
        FALLBACK_TOTAL("fallback_total"),
        ERRORS("errors"),
        RETRIES("retries"),
        TRANSPORT_FAILOVERS("transport_failovers"),
        EXCHANGES_UNIX("by_transport.unix"),
        EXCHANGES_TCP("by_transport.tcp"),
        FLAGS_REFRESH_OK("flags.refresh_ok"),
        FLAGS_REFRESH_FAILURES("flags.refresh_failures"),
        SHADOW_STARTED("shadow.started"),
        SHADOW_COMPARED("shadow.compared"),
        SHADOW_MATCHES("shadow.matches"),
        SHADOW_MISMATCHES("shadow.mismatches"),
        SHADOW_NORMD_FAILURES("shadow.normd_failures"),
        SHADOW_SKIPPED("shadow.skipped");

        final String dotted;

        Name(String dotted) {
            this.dotted = dotted;
        }
    }

    /**
     * normd's contract error codes (its README, "Errors"), seeded at zero so a metrics
     * binding made at startup sees them all; a code normd adds later is counted too.
     */
    static final String[] KNOWN_ERROR_CODES = {
        "invalid_json", "invalid_utf8", "duplicate_key", "too_deep", "unknown_profile", "unknown_schema",
        "unknown_encoding", "bad_parameter", "bad_content_encoding", "not_found", "method_not_allowed",
        "payload_too_large", "decoded_too_large", "unsupported_media_type", "unsupported_content_encoding",
        "schema_violation", "number_precision",
    };

    private final LongAdder[] fixed = new LongAdder[Name.values().length];
    private final LongAdder[] byReason = new LongAdder[Reason.values().length];
    private final ConcurrentHashMap<String, LongAdder> byCode = new ConcurrentHashMap<>();

    Counters() {
        for (int i = 0; i < fixed.length; i++) fixed[i] = new LongAdder();
        for (int i = 0; i < byReason.length; i++) byReason[i] = new LongAdder();
        for (String code : KNOWN_ERROR_CODES) byCode.put(code, new LongAdder());
    }

    LongAdder get(Name n) {
        return fixed[n.ordinal()];
    }

    void inc(Name n) {
        fixed[n.ordinal()].increment();
    }

    void fallback(Reason r) {
        fixed[Name.FALLBACK_TOTAL.ordinal()].increment();
        byReason[r.ordinal()].increment();
    }

    void error(String code) {
        fixed[Name.ERRORS.ordinal()].increment();
        byCode.computeIfAbsent(code, k -> new LongAdder()).increment();
    }

    long byReason(Reason r) {
        return byReason[r.ordinal()].sum();
    }

    Map<Reason, Long> byReason() {
        Map<Reason, Long> m = new EnumMap<>(Reason.class);
        for (Reason r : Reason.values()) m.put(r, byReason(r));
        return m;
    }

    Map<String, Long> byCode() {
        Map<String, Long> m = new TreeMap<>();
        byCode.forEach((k, v) -> m.put(k, v.sum()));
        return m;
    }

    /** Every counter by its dotted name: the fixed ones, then by reason, then by error code. */
    void forEach(BiConsumer<String, Long> sink) {
        for (Name n : Name.values()) sink.accept(n.dotted, fixed[n.ordinal()].sum());
        for (Reason r : Reason.values()) sink.accept("fallback_by_reason." + r.wireName(), byReason(r));
        byCode().forEach((code, v) -> sink.accept("errors_by_code." + code, v));
    }
}

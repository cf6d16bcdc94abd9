package dev.normd.client;

import java.util.List;
import java.util.Map;

/**
 * A snapshot of the client's counters and state. Each counter is read on its own, so
 * under concurrent calls the sums may be a few calls apart; at rest
 * {@code calls == normdOk + fallbackTotal + errors}.
 *
 * @param exchangesUnix HTTP exchanges carried by the Unix socket (GET /flags, shadow calls and error answers included)
 * @param exchangesTcp  the same over TCP
 * @param rolloutOverride the builder's fixed rolloutPercent, or null when the flags decide
 */
public record Stats(
        long calls,
        long normdOk,
        long fallbackTotal,
        Map<Reason, Long> fallbackByReason,
        long errors,
        Map<String, Long> errorsByCode,
        long retries,
        long transportFailovers,
        long exchangesUnix,
        long exchangesTcp,
        Breaker breaker,
        Integer rolloutOverride,
        Flags flags,
        Shadow shadow) {

    /**
     * @param state "closed", "open" or "half_open" (open past its cooldown reads half_open)
     */
    public record Breaker(String state, int consecutiveFailures, long openedTotal) {}

    /**
     * @param loaded          whether a GET /flags ever succeeded (until then calls fall back as unavailable)
     * @param enabled         the flag's {@code enabled}, null until loaded
     * @param rolloutPercent  null until loaded
     * @param shadowPercent   null until loaded
     * @param ageMillis       since the last successful refresh, null until loaded
     * @param lastError       why the last refresh failed, null after a success
     */
    public record Flags(boolean loaded, Boolean enabled, Integer rolloutPercent, Integer shadowPercent,
                        String version, String mtime, Long ageMillis, long refreshOk, long refreshFailures,
                        String lastError) {}

    /**
     * @param started       shadow calls sent to normd
     * @param compared      of those, answers compared with the in-app result: a 200 (match or
     *                      mismatch) or a contract error (a mismatch: normd refuses what in-app accepted)
     * @param normdFailures of those, calls normd did not answer with a usable 200
     * @param skipped       shadowed calls not sent (breaker not closed, concurrency bound reached,
     *                      or an in-app result that could not be turned into canonical bytes)
     * @param inFlight      shadow calls out now
     * @param mismatchKeys  the keys of the latest mismatches (at most 16), oldest first; never payloads
     */
    public record Shadow(long started, long compared, long matches, long mismatches, long normdFailures,
                         long skipped, int inFlight, List<String> mismatchKeys) {}
}

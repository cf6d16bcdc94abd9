package dev.normd.client;

/**
 * Why a call was answered in-app. The wire names are the counters' labels
 * ({@code fallback_by_reason.<name>}) and the same in every normd client.
 */
public enum Reason {
    /** 429 overloaded: normd's queue or byte budget is full. */
    OVERLOADED("overloaded"),
    /** 503 not_ready, draining, memory_pressure (any 503 but disabled); or flags never loaded. */
    UNAVAILABLE("unavailable"),
    /** The flag says {@code enabled: false}, or normd answered 503 disabled. */
    DISABLED("disabled"),
    /** 504 deadline_exceeded: normd gave up within the budget. */
    DEADLINE("deadline"),
    /** 500, a status outside the contract, or a 200 that breaks it (no X-Normd-Digest). */
    SERVER_ERROR("server_error"),
    /** Socket missing, refused, reset, or the answer cut short. */
    CONNECTION("connection"),
    /** No complete answer within the deadline plus the slack. */
    TIMEOUT("timeout"),
    /** The circuit breaker is open: no I/O at all. */
    BREAKER_OPEN("breaker_open"),
    /** The key's bucket is outside rollout_percent: no I/O at all. */
    ROLLOUT("rollout"),
    /** The key's bucket is in the shadow band: in-app answer, normd checked in the background. */
    SHADOW("shadow");

    private final String wireName;

    Reason(String wireName) {
        this.wireName = wireName;
    }

    /** The name in counters, logs and the conformance kit, e.g. {@code breaker_open}. */
    public String wireName() {
        return wireName;
    }

    @Override
    public String toString() {
        return wireName;
    }
}

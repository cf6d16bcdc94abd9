package dev.normd.client;

import java.util.Set;

/**
 * The fallback table in one place: what an answer of normd means for the call (use it,
 * fall back for a reason, or throw the caller's contract error) and for the breaker.
 * Shadow calls read the same table.
 */
enum Verdict {
    OK(null, true),
    CONTRACT_ERROR(null, true),
    OVERLOADED(Reason.OVERLOADED, false),
    UNAVAILABLE(Reason.UNAVAILABLE, false),
    DISABLED(Reason.DISABLED, true), // normd is alive and answering: the flag said no
    DEADLINE(Reason.DEADLINE, false),
    SERVER_ERROR(Reason.SERVER_ERROR, false);

    /** The fallback reason, null for OK and CONTRACT_ERROR. */
    final Reason reason;
    /** Whether the breaker counts the answer as a sign of a healthy normd. */
    final boolean healthy;

    Verdict(Reason reason, boolean healthy) {
        this.reason = reason;
        this.healthy = healthy;
    }

    /**
     * The 4xx of normd's contract (429 aside): the caller's request or data is wrong. Any
     * other 4xx (401, 403, 408, 409 from something in front of normd) is not the contract
     * speaking and falls back as server_error.
     */
    private static final Set<Integer> CONTRACT_STATUSES = Set.of(400, 404, 405, 413, 415, 422);

    static Verdict of(int status, String problemCode, boolean hasDigest) {
        if (status == 200) return hasDigest ? OK : SERVER_ERROR; // a 200 without its digest breaks the contract
        if (status == 429) return OVERLOADED;
        if (status == 503) return "disabled".equals(problemCode) ? DISABLED : UNAVAILABLE;
        if (status == 504) return DEADLINE;
        if (CONTRACT_STATUSES.contains(status)) return CONTRACT_ERROR;
        return SERVER_ERROR;
    }
}

package dev.normd.client;

import java.time.Duration;
import java.util.Arrays;
import java.util.Locale;
import java.util.Objects;
import java.util.Set;

/**
 * Per-call settings, immutable: start from {@link #none()} or {@link #key(String)} and
 * add with the {@code with...} methods. Anything unset takes the client's default.
 * Every check happens here, when the options are built, so a caller's mistake throws
 * {@link IllegalArgumentException} before anything is sent or counted.
 */
public final class CallOptions {
    private static final CallOptions NONE = new CallOptions(null, null, null, null, null, null, null, new String[0]);

    /** Headers the client writes itself, or that belong to the HTTP framing. */
    private static final Set<String> RESERVED = Set.of(
            "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "expect", "te",
            "trailer", "content-type", "x-deadline-ms", "x-request-id");

    final String key;
    final String profile;
    final String schema;
    final String encoding;
    final Integer level;
    final Duration deadline;
    final String requestId;
    /** Extra headers as name/value pairs. */
    final String[] headers;

    private CallOptions(String key, String profile, String schema, String encoding, Integer level,
                        Duration deadline, String requestId, String[] headers) {
        this.key = key;
        this.profile = profile;
        this.schema = schema;
        this.encoding = encoding;
        this.level = level;
        this.deadline = deadline;
        this.requestId = requestId;
        this.headers = headers;
    }

    /** No per-call settings. */
    public static CallOptions none() {
        return NONE;
    }

    /** Options with the sticky rollout key (an order id, a user id): same key, same path. */
    public static CallOptions key(String key) {
        return NONE.withKey(key);
    }

    public CallOptions withKey(String key) {
        return new CallOptions(key, profile, schema, encoding, level, deadline, requestId, headers);
    }

    /** {@code ?profile=}: a profile of normd's config file. */
    public CallOptions withProfile(String profile) {
        return new CallOptions(key, profile, schema, encoding, level, deadline, requestId, headers);
    }

    /** {@code ?schema=}: a schema file stem, e.g. {@code order.v1}. */
    public CallOptions withSchema(String schema) {
        return new CallOptions(key, profile, schema, encoding, level, deadline, requestId, headers);
    }

    /** {@code ?encoding=}: gzip, br, zstd or identity. */
    public CallOptions withEncoding(String encoding) {
        return new CallOptions(key, profile, schema, encoding, level, deadline, requestId, headers);
    }

    /** {@code ?level=}: the compression level. */
    public CallOptions withLevel(int level) {
        return new CallOptions(key, profile, schema, encoding, level, deadline, requestId, headers);
    }

    /** This call's budget: sent as X-Deadline-Ms (whole ms, at least 1) and enforced locally. */
    public CallOptions withDeadline(Duration deadline) {
        if (deadline.isNegative() || deadline.isZero()) throw new IllegalArgumentException("deadline must be > 0");
        return new CallOptions(key, profile, schema, encoding, level, deadline, requestId, headers);
    }

    /** Sent as X-Request-Id (up to 128 visible ASCII characters, or normd makes its own). */
    public CallOptions withRequestId(String requestId) {
        checkValue("X-Request-Id", requestId);
        return new CallOptions(key, profile, schema, encoding, level, deadline, requestId, headers);
    }

    /** An extra request header passed through (e.g. {@code traceparent}). */
    public CallOptions withHeader(String name, String value) {
        checkName(name);
        checkValue(name, value);
        if (RESERVED.contains(name.toLowerCase(Locale.ROOT))) {
            throw new IllegalArgumentException("header " + name + " is set by the client");
        }
        String[] h = Arrays.copyOf(headers, headers.length + 2);
        h[headers.length] = name;
        h[headers.length + 1] = value;
        return new CallOptions(key, profile, schema, encoding, level, deadline, requestId, h);
    }

    private static void checkName(String name) {
        Objects.requireNonNull(name, "header name");
        if (name.isEmpty()) throw new IllegalArgumentException("empty header name");
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            boolean token = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    || "!#$%&'*+-.^_`|~".indexOf(c) >= 0;
            if (!token) throw new IllegalArgumentException("header name " + name + " has a character HTTP does not allow");
        }
    }

    private static void checkValue(String name, String value) {
        Objects.requireNonNull(value, name);
        for (int i = 0; i < value.length(); i++) {
            char c = value.charAt(i);
            if ((c < 0x20 && c != '\t') || c == 0x7f || c > 0xff) {
                throw new IllegalArgumentException("header " + name + " has a character HTTP does not allow");
            }
        }
    }
}

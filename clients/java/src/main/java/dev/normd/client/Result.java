package dev.normd.client;

import java.nio.charset.StandardCharsets;

/**
 * The answer of one {@link NormdClient#norm} call: who did the work, and what it made.
 *
 * @param path           {@link Path#NORMD} or {@link Path#INAPP}
 * @param reason         why the call went in-app; null on the normd path
 * @param data           normd: the canonical JSON compressed with {@code encoding} (a {@code byte[]});
 *                       in-app: whatever the fallback returned
 * @param encoding       X-Normd-Encoding ({@code gzip}, {@code br}, {@code zstd}, {@code identity}); null in-app
 * @param digest         X-Normd-Digest, {@code sha-256=:<base64>:} of the canonical bytes; null in-app
 * @param canonicalBytes X-Normd-Canonical-Bytes, or -1
 * @param inputBytes     X-Normd-Input-Bytes, or -1
 * @param outputBytes    X-Normd-Output-Bytes, or -1
 * @param schema         X-Normd-Schema, when a schema validated the document
 * @param requestId      X-Request-Id as normd echoed it (find its log line with it)
 * @param transport      {@code unix} or {@code tcp} for the normd path; null in-app
 */
public record Result(
        Path path,
        Reason reason,
        Object data,
        String encoding,
        String digest,
        long canonicalBytes,
        long inputBytes,
        long outputBytes,
        String schema,
        String requestId,
        String transport) {

    /** Who did the work. */
    public enum Path { NORMD, INAPP }

    static Result inApp(Reason reason, Object data) {
        return new Result(Path.INAPP, reason, data, null, null, -1, -1, -1, null, null, null);
    }

    /** Whether normd did the work. */
    public boolean fromNormd() {
        return path == Path.NORMD;
    }

    /**
     * {@code data} as bytes: the {@code byte[]} itself, or a String's UTF-8 bytes (for an
     * in-app function that returns text). Anything else is a ClassCastException: the
     * caller knows what its fallback returns.
     */
    public byte[] bytes() {
        if (data instanceof byte[] b) return b;
        if (data instanceof String s) return s.getBytes(StandardCharsets.UTF_8);
        throw new ClassCastException("Result.data is a " + (data == null ? "null" : data.getClass().getName()) + ", not bytes");
    }
}

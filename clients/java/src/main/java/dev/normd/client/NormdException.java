package dev.normd.client;

import java.util.List;
import java.util.Map;

/**
 * normd refused the request with a contract error (400, 404, 405, 413, 415, 422): the
 * request or the data is the caller's problem, and the in-app path would either fail the
 * same way or accept what normd refused, so this is thrown instead of falling back.
 * Also the {@link FallbackContext#cause()} of fallbacks that carried a problem (429, 503, 504, 5xx).
 */
public class NormdException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String code;
    private final transient Map<String, Object> problem;
    private final String requestId;

    public NormdException(int status, Map<String, Object> problem, String requestId) {
        super("normd " + status + " " + codeOf(status, problem) + ": " + detailOf(problem));
        this.status = status;
        this.code = codeOf(status, problem);
        this.problem = problem;
        this.requestId = requestId;
    }

    /** The HTTP status normd answered. */
    public int status() {
        return status;
    }

    /** The problem's stable code ({@code schema_violation}, {@code invalid_json}, ...), or {@code http_<status>}. */
    public String code() {
        return code;
    }

    /** The whole RFC 9457 problem document as parsed (a minimal one when the body was not JSON). */
    public Map<String, Object> problem() {
        return problem;
    }

    /**
     * The {@code errors} of a schema_violation: maps with {@code instance_path},
     * {@code schema_path}, {@code message}; empty otherwise.
     */
    @SuppressWarnings("unchecked")
    public List<Map<String, Object>> errors() {
        Object e = problem.get("errors");
        return e instanceof List<?> l ? (List<Map<String, Object>>) l : List.of();
    }

    /** X-Request-Id as normd echoed it, to find its log line. */
    public String requestId() {
        return requestId;
    }

    private static String codeOf(int status, Map<String, Object> problem) {
        return problem.get("code") instanceof String s ? s : "http_" + status;
    }

    private static String detailOf(Map<String, Object> problem) {
        if (problem.get("detail") instanceof String s) return s;
        if (problem.get("title") instanceof String s) return s;
        return "normd refused the request";
    }
}

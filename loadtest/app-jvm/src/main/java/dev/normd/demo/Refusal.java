package dev.normd.demo;

import java.util.List;

/**
 * The caller's data is wrong: answered as {@code status} with a stable {@code code}, the
 * same codes normd uses. No stack trace: a refusal is an answer, not a bug.
 */
final class Refusal extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** One schema finding: JSON pointer of the instance, and what is wrong there. */
    record Finding(String instancePath, String message) {}

    final int status;
    final String code;
    final transient List<Finding> errors;

    Refusal(int status, String code, String detail, List<Finding> errors) {
        super(detail, null, false, false);
        this.status = status;
        this.code = code;
        this.errors = errors == null ? List.of() : errors;
    }

    static Refusal badRequest(String code, String detail) {
        return new Refusal(400, code, detail, null);
    }

    static Refusal unprocessable(String code, String detail) {
        return new Refusal(422, code, detail, null);
    }
}

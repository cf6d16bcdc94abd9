package dev.normd.client;

/**
 * normd was not used (for {@link #reason()}) and the client has no in-app function to
 * answer with: build it with {@code fallback(...)} to never see this.
 */
public class NormdUnavailableException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final Reason reason;

    public NormdUnavailableException(Reason reason, Throwable cause) {
        super("normd not used (" + reason.wireName() + ") and no fallback configured", cause);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}

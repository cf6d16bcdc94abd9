package dev.normd.client;

import java.io.Closeable;
import java.io.IOException;
import java.util.Map;

/**
 * One way to reach normd (its Unix socket, or TCP on 127.0.0.1). A transport carries one
 * HTTP exchange at a time per caller thread and reads the whole answer; it decides
 * nothing about fallbacks. Failures are the {@link Failure} exceptions below or any
 * other {@link IOException} (a connection failure).
 */
interface Transport extends Closeable {
    /** {@code unix} or {@code tcp}: the label of the exchange counters. */
    String name();

    /**
     * Sends {@code request} and reads the complete answer, giving up at
     * {@code deadlineNanos} ({@link System#nanoTime()} scale).
     */
    Reply exchange(Request request, long deadlineNanos) throws IOException;

    @Override
    void close();

    /** Method, request target ({@code /norm?profile=x}), extra headers as name/value pairs, body or null. */
    record Request(String method, String target, String[] headers, byte[] body) {}

    /**
     * Status, headers by lower-case name (repeated ones joined with ", "; the Unix framing
     * keeps only those the client reads), the whole body, and who carried it.
     */
    record Reply(int status, Map<String, String> headers, byte[] body, String transport) {
        String header(String lowerCaseName) {
            return headers.get(lowerCaseName);
        }
    }

    /** The failures a caller must tell apart; anything else is a broken connection. */
    final class Failure {
        private Failure() {}

        /** Nothing was sent: the socket file is missing, refused, or not ours to open. Another transport may do. */
        static final class ConnectFailed extends IOException {
            private static final long serialVersionUID = 1L;

            ConnectFailed(IOException cause) {
                super("cannot connect: " + cause.getMessage(), cause);
            }
        }

        /** The local deadline (the call's budget plus the slack) passed without a complete answer. */
        static final class DeadlinePassed extends IOException {
            private static final long serialVersionUID = 1L;

            DeadlinePassed() {
                super("no complete answer from normd within the deadline");
            }
        }

        /** An answer larger than maxResponseBytes: refused rather than buffered. */
        static final class TooLarge extends IOException {
            private static final long serialVersionUID = 1L;

            TooLarge(long max) {
                super("normd answer larger than " + max + " bytes");
            }
        }
    }
}

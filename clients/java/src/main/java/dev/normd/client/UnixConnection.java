package dev.normd.client;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.AsynchronousCloseException;
import java.nio.channels.ClosedSelectorException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * One keep-alive HTTP/1.1 connection to normd's Unix socket, with the framing written by
 * hand: {@code java.net.http.HttpClient} cannot dial a Unix socket, and the subset normd
 * speaks is small — a request with {@code Content-Length}; an answer with a status line,
 * headers, and a {@code Content-Length}, chunked or close-delimited body.
 *
 * <p>The channel is non-blocking and waits on its own {@link Selector} with the time left
 * to the deadline, so a stalled normd costs a caller its budget, never more (a blocking
 * Unix channel has no read timeout). One caller uses a connection at a time; only
 * {@link #close()} may come from another thread.
 */
final class UnixConnection {
    /** A status line and headers larger than this are not normd's. */
    private static final int MAX_HEAD = 64 * 1024;
    private static final int MAX_CHUNK_LINE = 1024;
    private static final byte[] CRLF = {'\r', '\n'};

    /** Raised when a reused connection turns out to have been closed by normd before it answered. */
    static final class Stale extends IOException {
        private static final long serialVersionUID = 1L;

        Stale(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private final SocketChannel channel;
    private final Selector selector;
    private final SelectionKey key;

    /** The request head being written: out[0, outLen), wrapped once by headBuf. */
    private byte[] out = new byte[512];
    private int outLen;
    private ByteBuffer headBuf = ByteBuffer.wrap(out);
    /** Bytes read but not consumed are buf[pos, end). */
    private byte[] buf = new byte[8192];
    private int pos;
    private int end;
    /** Whether any byte of the current answer arrived (after that, a failure is a cut answer, not a stale connection). */
    private boolean received;
    private boolean reusable;
    /** When the connection went back to the pool (System.nanoTime). */
    long idleSince;

    private UnixConnection(SocketChannel channel, Selector selector, SelectionKey key) {
        this.channel = channel;
        this.selector = selector;
        this.key = key;
    }

    /**
     * Connects before {@code deadlineNanos}; a missing socket file, a refusal or a
     * permission error is {@link Transport.Failure.ConnectFailed}.
     */
    static UnixConnection open(UnixDomainSocketAddress address, long deadlineNanos) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        Selector sel = null;
        try {
            ch.configureBlocking(false);
            sel = Selector.open();
            boolean connected = ch.connect(address);
            SelectionKey k = ch.register(sel, connected ? 0 : SelectionKey.OP_CONNECT);
            UnixConnection c = new UnixConnection(ch, sel, k);
            // A Unix connect completes at once unless normd's accept backlog is full.
            while (!connected) {
                c.await(SelectionKey.OP_CONNECT, deadlineNanos);
                connected = ch.finishConnect();
            }
            return c;
        } catch (Transport.Failure.DeadlinePassed e) {
            closeQuietly(ch, sel);
            throw e;
        } catch (IOException e) {
            closeQuietly(ch, sel);
            throw new Transport.Failure.ConnectFailed(e);
        }
    }

    /** Whether the last exchange left the connection fit for another request. */
    boolean reusable() {
        return reusable && channel.isOpen();
    }

    /**
     * Writes the request and reads the whole answer. With {@code reused}, a write failure
     * or an end of stream before the first byte of the answer is {@link Stale}.
     */
    Transport.Reply exchange(Transport.Request req, long deadlineNanos, long maxBody, boolean reused) throws IOException {
        pos = 0;
        end = 0;
        received = false;
        reusable = false;
        try {
            write(head(req), req.body(), deadlineNanos);
        } catch (Transport.Failure.DeadlinePassed e) {
            throw e;
        } catch (IOException e) {
            if (reused) throw new Stale("normd had closed the keep-alive connection", e);
            throw e;
        }
        try {
            return read(req, deadlineNanos, maxBody);
        } catch (Transport.Failure.DeadlinePassed | Transport.Failure.TooLarge e) {
            throw e;
        } catch (IOException e) {
            if (reused && !received) throw new Stale("normd had closed the keep-alive connection", e);
            throw e;
        } catch (ClosedSelectorException e) {
            throw new AsynchronousCloseException(); // close() from another thread (the client closed)
        }
    }

    /**
     * Writes the request head into the connection's own buffer (reused call after call: a
     * call's garbage is what this client exists to cut). Header names and values are
     * Latin-1 by then: CallOptions refused anything else.
     */
    private ByteBuffer head(Transport.Request req) {
        outLen = 0;
        put(req.method());
        put(" ");
        put(req.target());
        put(" HTTP/1.1\r\nHost: localhost\r\n");
        String[] h = req.headers();
        for (int i = 0; i + 1 < h.length; i += 2) {
            put(h[i]);
            put(": ");
            put(h[i + 1]);
            put("\r\n");
        }
        if (req.body() != null) {
            put("Content-Length: ");
            putDecimal(req.body().length);
            put("\r\n");
        }
        put("\r\n");
        if (headBuf.array() != out) headBuf = ByteBuffer.wrap(out);
        headBuf.clear().limit(outLen);
        return headBuf;
    }

    private void put(String s) {
        int n = s.length();
        if (outLen + n > out.length) out = Arrays.copyOf(out, Math.max(out.length * 2, outLen + n));
        for (int i = 0; i < n; i++) out[outLen++] = (byte) s.charAt(i);
    }

    private void putDecimal(int v) {
        if (outLen + 10 > out.length) out = Arrays.copyOf(out, out.length * 2);
        int start = outLen;
        do {
            out[outLen++] = (byte) ('0' + v % 10);
            v /= 10;
        } while (v > 0);
        for (int i = start, j = outLen - 1; i < j; i++, j--) {
            byte t = out[i];
            out[i] = out[j];
            out[j] = t;
        }
    }

    private void write(ByteBuffer head, byte[] body, long deadlineNanos) throws IOException {
        ByteBuffer[] bufs = body == null || body.length == 0
                ? new ByteBuffer[] {head}
                : new ByteBuffer[] {head, ByteBuffer.wrap(body)};
        ByteBuffer last = bufs[bufs.length - 1];
        try {
            while (last.hasRemaining()) {
                if (channel.write(bufs) == 0) await(SelectionKey.OP_WRITE, deadlineNanos);
            }
        } catch (ClosedSelectorException e) {
            throw new AsynchronousCloseException();
        }
    }

    /**
     * The headers the client reads; only these become Strings (an answer carries a dozen
     * others nobody here looks at).
     */
    private static final String[] READ_HEADERS = {
        "content-length", "transfer-encoding", "connection", "content-type", "retry-after", "x-request-id",
        "x-normd-encoding", "x-normd-input-bytes", "x-normd-canonical-bytes", "x-normd-output-bytes",
        "x-normd-schema", "x-normd-digest",
    };

    /** The READ_HEADERS entry that buf[from, from+len) names, ignoring case; null for any other. */
    private String known(int from, int len) {
        for (String name : READ_HEADERS) {
            if (name.length() != len) continue;
            int i = 0;
            while (i < len && Character.toLowerCase((char) (buf[from + i] & 0xff)) == name.charAt(i)) i++;
            if (i == len) return name;
        }
        return null;
    }

    private Transport.Reply read(Transport.Request req, long deadlineNanos, long maxBody) throws IOException {
        int status;
        Map<String, String> headers;
        boolean http11;
        while (true) {
            int headEnd = headEnd(deadlineNanos);
            int lineEnd = lineEnd(pos, headEnd);
            // "HTTP/1.1 200 OK": the version, a space, three digits
            if (lineEnd - pos < 12 || !startsWith(pos, "HTTP/1.") || buf[pos + 8] != ' ') {
                throw new IOException("not an HTTP/1.x answer: " + new String(buf, pos, Math.min(lineEnd - pos, 80), StandardCharsets.ISO_8859_1));
            }
            http11 = buf[pos + 7] == '1';
            status = 0;
            for (int i = pos + 9; i < pos + 12; i++) {
                int d = buf[i] - '0';
                if (d < 0 || d > 9) throw new IOException("bad status code");
                status = status * 10 + d;
            }
            headers = new HashMap<>(16);
            for (int ls = lineEnd + 2; ls < headEnd; ) {
                int le = lineEnd(ls, headEnd);
                int colon = ls;
                while (colon < le && buf[colon] != ':') colon++;
                if (colon == ls || colon == le) throw new IOException("bad header line");
                String name = known(ls, colon - ls);
                if (name != null) {
                    int vs = colon + 1;
                    int ve = le;
                    while (vs < ve && (buf[vs] == ' ' || buf[vs] == '\t')) vs++;
                    while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t')) ve--;
                    String value = new String(buf, vs, ve - vs, StandardCharsets.ISO_8859_1);
                    headers.merge(name, value, (a, v) -> a + ", " + v);
                }
                ls = le + 2;
            }
            pos = headEnd + 4;
            if (status >= 200 || status == 101) break;
            // 1xx (100 Continue): an interim answer, the real one follows.
        }

        String connection = headers.getOrDefault("connection", "").toLowerCase(Locale.ROOT);
        boolean keepAlive = http11 && !connection.contains("close");
        String te = headers.get("transfer-encoding");
        String cl = headers.get("content-length");
        byte[] body;
        if (req.method().equals("HEAD") || status == 204 || status == 304) {
            body = new byte[0];
        } else if (te != null) {
            if (!te.toLowerCase(Locale.ROOT).endsWith("chunked")) throw new IOException("unsupported Transfer-Encoding: " + te);
            body = chunked(deadlineNanos, maxBody);
        } else if (cl != null) {
            long n;
            try {
                n = Long.parseLong(cl);
            } catch (NumberFormatException e) {
                throw new IOException("bad Content-Length: " + cl); // includes two differing values joined
            }
            if (n < 0) throw new IOException("bad Content-Length: " + cl);
            if (n > maxBody) throw new Transport.Failure.TooLarge(maxBody);
            body = exactly((int) n, deadlineNanos);
        } else {
            body = untilEof(deadlineNanos, maxBody);
            keepAlive = false;
        }
        // Bytes past the answer would be a second answer nobody asked for.
        reusable = keepAlive && pos == end;
        return new Transport.Reply(status, headers, body, "unix");
    }

    /** The index of the CRLF ending the line that starts at {@code from} (or {@code limit}). */
    private int lineEnd(int from, int limit) {
        int i = from;
        while (i + 1 < limit && !(buf[i] == '\r' && buf[i + 1] == '\n')) i++;
        return i + 1 < limit ? i : limit;
    }

    private boolean startsWith(int from, String prefix) {
        for (int i = 0; i < prefix.length(); i++) if (buf[from + i] != prefix.charAt(i)) return false;
        return true;
    }

    /** Reads until the buffer holds a whole head; returns the index of its CRLFCRLF. */
    private int headEnd(long deadlineNanos) throws IOException {
        while (true) {
            // Rescanning from pos after each read is fine: a head is a few hundred bytes.
            for (int i = pos; i + 3 < end; i++) {
                if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') return i;
            }
            if (end - pos > MAX_HEAD) throw new IOException("answer head larger than " + MAX_HEAD + " bytes");
            if (fill(deadlineNanos) < 0) {
                throw new IOException(received ? "normd closed the connection mid-answer" : "normd closed the connection before answering");
            }
        }
    }

    private byte[] exactly(int n, long deadlineNanos) throws IOException {
        byte[] body = new byte[n];
        int have = Math.min(n, end - pos);
        System.arraycopy(buf, pos, body, 0, have);
        pos += have;
        ByteBuffer rest = ByteBuffer.wrap(body, have, n - have);
        while (rest.hasRemaining()) {
            if (readInto(rest, deadlineNanos) < 0) {
                throw new IOException("normd ended the answer after " + rest.position() + " of " + n + " bytes");
            }
        }
        return body;
    }

    private byte[] chunked(long deadlineNanos, long maxBody) throws IOException {
        Growable out = new Growable();
        while (true) {
            String line = line(deadlineNanos);
            int semi = line.indexOf(';');
            String hex = (semi >= 0 ? line.substring(0, semi) : line).trim();
            long size;
            try {
                size = Long.parseLong(hex, 16);
            } catch (NumberFormatException e) {
                throw new IOException("bad chunk size: " + hex);
            }
            if (size < 0) throw new IOException("bad chunk size: " + hex);
            if (size == 0) {
                while (!line(deadlineNanos).isEmpty()) {
                    // trailer fields: normd sends none, they are skipped
                }
                return out.toArray();
            }
            if (out.size + size > maxBody) throw new Transport.Failure.TooLarge(maxBody);
            out.append(exactly((int) size, deadlineNanos));
            if (!line(deadlineNanos).isEmpty()) throw new IOException("chunk not followed by CRLF");
        }
    }

    private byte[] untilEof(long deadlineNanos, long maxBody) throws IOException {
        Growable out = new Growable();
        while (true) {
            if (end > pos) {
                if (out.size + (end - pos) > maxBody) throw new Transport.Failure.TooLarge(maxBody);
                out.append(Arrays.copyOfRange(buf, pos, end));
                pos = end;
            }
            if (fill(deadlineNanos) < 0) return out.toArray();
        }
    }

    /** One CRLF-terminated line of the chunked framing, without its CRLF. */
    private String line(long deadlineNanos) throws IOException {
        while (true) {
            for (int i = pos; i + 1 < end; i++) {
                if (buf[i] == CRLF[0] && buf[i + 1] == CRLF[1]) {
                    String s = new String(buf, pos, i - pos, StandardCharsets.ISO_8859_1);
                    pos = i + 2;
                    return s;
                }
            }
            if (end - pos > MAX_CHUNK_LINE) throw new IOException("chunk line too long");
            if (fill(deadlineNanos) < 0) throw new IOException("normd closed the connection mid-answer");
        }
    }

    /** Reads more into buf (moving or growing it as needed); -1 at end of stream. */
    private int fill(long deadlineNanos) throws IOException {
        if (pos == end) {
            pos = 0;
            end = 0;
        } else if (end == buf.length) {
            if (pos > 0) {
                System.arraycopy(buf, pos, buf, 0, end - pos);
                end -= pos;
                pos = 0;
            } else {
                buf = Arrays.copyOf(buf, buf.length * 2);
            }
        }
        int n = readInto(ByteBuffer.wrap(buf, end, buf.length - end), deadlineNanos);
        if (n > 0) end += n;
        return n;
    }

    private int readInto(ByteBuffer dst, long deadlineNanos) throws IOException {
        while (true) {
            int n = channel.read(dst);
            if (n != 0) {
                if (n > 0) received = true;
                return n;
            }
            await(SelectionKey.OP_READ, deadlineNanos);
        }
    }

    /** Waits until the channel is ready for {@code op} or the deadline passes. */
    private void await(int op, long deadlineNanos) throws IOException {
        long left = deadlineNanos - System.nanoTime();
        if (left <= 0) throw new Transport.Failure.DeadlinePassed();
        key.interestOps(op);
        // select(0) would wait forever: round the wait up to at least 1 ms.
        selector.select(Math.max(1, TimeUnit.NANOSECONDS.toMillis(left + 999_999)));
        selector.selectedKeys().clear();
        // select() returns at once for an interrupted thread: give up rather than spin to the deadline.
        if (Thread.currentThread().isInterrupted()) throw new InterruptedIOException("interrupted while waiting for normd");
    }

    /**
     * Closes the channel and its selector. Safe from any thread: closing the selector
     * wakes a caller blocked in it, which then fails as a closed connection.
     */
    void close() {
        closeQuietly(channel, selector);
    }

    private static void closeQuietly(SocketChannel ch, Selector sel) {
        try {
            if (sel != null) sel.close();
        } catch (IOException ignored) {
            // nothing useful to do: the fd is gone either way
        }
        try {
            ch.close();
        } catch (IOException ignored) {
            // as above
        }
    }

    /** A byte array that grows by doubling, for bodies of unknown length. */
    private static final class Growable {
        byte[] data = new byte[1024];
        int size;

        void append(byte[] b) {
            if (size + b.length > data.length) data = Arrays.copyOf(data, Math.max(data.length * 2, size + b.length));
            System.arraycopy(b, 0, data, size, b.length);
            size += b.length;
        }

        byte[] toArray() {
            return Arrays.copyOf(data, size);
        }
    }
}

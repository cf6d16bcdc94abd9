package dev.normd.client;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A programmable stand-in for normd on a temp Unix socket (or on 127.0.0.1): it parses
 * requests, records them, and lets each test answer with whatever bytes it wants — a
 * normal answer, a problem, a chunked body, a cut one, a stall, a reset.
 */
final class FakeNormd implements AutoCloseable {
    /** One request as received. */
    record Req(String method, String target, Map<String, String> headers, byte[] body, int connection) {
        String header(String name) {
            return headers.get(name.toLowerCase(Locale.ROOT));
        }
    }

    /** Answers a POST (or any request but GET /flags); writes to {@code out}, may close it. */
    @FunctionalInterface
    interface Handler {
        void answer(Req req, Conn out) throws Exception;
    }

    /** The connection a handler answers on. */
    static final class Conn {
        final SocketChannel ch;
        boolean closed;

        Conn(SocketChannel ch) {
            this.ch = ch;
        }

        void write(byte[] b) throws IOException {
            ByteBuffer buf = ByteBuffer.wrap(b);
            while (buf.hasRemaining()) ch.write(buf);
        }

        void write(String s) throws IOException {
            write(s.getBytes(StandardCharsets.ISO_8859_1));
        }

        void close() throws IOException {
            closed = true;
            ch.close();
        }
    }

    final Path socket;
    final int port;
    private final ServerSocketChannel server;
    private final Thread acceptor;
    private final Set<SocketChannel> conns = ConcurrentHashMap.newKeySet();
    private final List<Req> requests = new ArrayList<>();
    private final AtomicInteger connections = new AtomicInteger();
    volatile Handler handler = (req, out) -> ok(out, "{\"a\":1}".getBytes(StandardCharsets.UTF_8));
    volatile String flagsJson = flagsDoc(true, 100, 0);
    volatile int flagsStatus = 200;

    private FakeNormd(ServerSocketChannel server, Path socket, int port) {
        this.server = server;
        this.socket = socket;
        this.port = port;
        this.acceptor = new Thread(this::acceptLoop, "fake-normd-accept");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    /** A test body with a fake normd on a temp socket. */
    @FunctionalInterface
    interface WithFake {
        void run(FakeNormd fake) throws Exception;
    }

    /** Runs {@code body} against a fake normd on a temp socket, both closed whatever happens. */
    static dev.normd.testing.Registry.Body onTempSocket(WithFake body) {
        return () -> {
            Path dir = TestPaths.tempDir();
            try (FakeNormd fake = FakeNormd.unix(dir)) {
                body.run(fake);
            } finally {
                TestPaths.deleteTree(dir);
            }
        };
    }

    static FakeNormd unix(Path dir) throws IOException {
        Path sock = dir.resolve("normd.sock");
        ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        s.bind(UnixDomainSocketAddress.of(sock));
        return new FakeNormd(s, sock, 0);
    }

    static FakeNormd tcp() throws IOException {
        ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.INET);
        s.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
        return new FakeNormd(s, null, ((InetSocketAddress) s.getLocalAddress()).getPort());
    }

    static String flagsDoc(boolean enabled, int rollout, int shadow) {
        return "{\"version\":\"v1\",\"mtime\":null,\"source\":\"fake\",\"flags\":{\"norm\":{\"enabled\":" + enabled
                + ",\"rollout_percent\":" + rollout + ",\"shadow_percent\":" + shadow + "}},\"last_error\":null}";
    }

    /** Requests seen so far (GET /flags included), in arrival order. */
    List<Req> requests() {
        synchronized (requests) {
            return List.copyOf(requests);
        }
    }

    List<Req> requests(String pathPrefix) {
        return requests().stream().filter(r -> r.target().startsWith(pathPrefix)).toList();
    }

    /** Connections accepted so far. */
    int connections() {
        return connections.get();
    }

    private void acceptLoop() {
        while (server.isOpen()) {
            SocketChannel ch;
            try {
                ch = server.accept();
            } catch (IOException e) {
                return; // closed
            }
            conns.add(ch);
            int id = connections.incrementAndGet();
            Thread t = new Thread(() -> serve(ch, id), "fake-normd-conn-" + id);
            t.setDaemon(true);
            t.start();
        }
    }

    private void serve(SocketChannel ch, int id) {
        Conn out = new Conn(ch);
        try (InputStream in = Channels.newInputStream(ch)) {
            while (!out.closed) {
                Req req = readRequest(in, id);
                if (req == null) return;
                synchronized (requests) {
                    requests.add(req);
                }
                if (req.method().equals("GET") && req.target().equals("/flags")) {
                    byte[] body = flagsJson.getBytes(StandardCharsets.UTF_8);
                    out.write("HTTP/1.1 " + flagsStatus + " X\r\nContent-Type: application/json\r\nContent-Length: "
                            + body.length + "\r\n\r\n");
                    out.write(body);
                } else {
                    handler.answer(req, out);
                }
            }
        } catch (Exception e) {
            // the client went away, or the test closed us
        } finally {
            conns.remove(ch);
            try {
                ch.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
    }

    private static Req readRequest(InputStream in, int id) throws IOException {
        ByteArrayOutputStream head = new ByteArrayOutputStream();
        int last4 = 0;
        while (last4 != 0x0d0a0d0a) {
            int b = in.read();
            if (b < 0) return null;
            head.write(b);
            last4 = (last4 << 8) | b;
            if (head.size() > 65536) throw new IOException("head too large");
        }
        String[] lines = head.toString(StandardCharsets.ISO_8859_1).split("\r\n");
        String[] rl = lines[0].split(" ");
        Map<String, String> headers = new HashMap<>();
        for (int i = 1; i < lines.length; i++) {
            int c = lines[i].indexOf(':');
            headers.put(lines[i].substring(0, c).trim().toLowerCase(Locale.ROOT), lines[i].substring(c + 1).trim());
        }
        int n = Integer.parseInt(headers.getOrDefault("content-length", "0"));
        byte[] body = in.readNBytes(n);
        if (body.length < n) return null;
        return new Req(rl[0], rl[1], headers, body, id);
    }

    // Answers a handler can give.

    /** A 200 with every X-Normd-* header; the digest is that of {@code canonical} (sent as identity). */
    static void ok(Conn out, byte[] canonical) throws IOException {
        out.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Normd-Encoding: identity\r\n"
                + "X-Normd-Input-Bytes: 7\r\nX-Normd-Canonical-Bytes: " + canonical.length + "\r\nX-Normd-Output-Bytes: "
                + canonical.length + "\r\nX-Normd-Digest: " + Shadow.digestOf(canonical) + "\r\nX-Request-Id: rid-1\r\n"
                + "Content-Length: " + canonical.length + "\r\n\r\n");
        out.write(canonical);
    }

    static void problem(Conn out, int status, String code) throws IOException {
        byte[] body = ("{\"type\":\"urn:normd:problem:" + code + "\",\"title\":\"t\",\"status\":" + status
                + ",\"detail\":\"d\",\"code\":\"" + code + "\"}").getBytes(StandardCharsets.UTF_8);
        out.write("HTTP/1.1 " + status + " X\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\n"
                + "X-Request-Id: rid-2\r\nContent-Length: " + body.length + "\r\n\r\n");
        out.write(body);
    }

    /** Holds the request until the client hangs up, or the fake is closed (which ends the read). */
    static void hang(Conn out) throws IOException {
        ByteBuffer one = ByteBuffer.allocate(1);
        while (out.ch.read(one) >= 0) one.clear();
        out.close();
    }

    @Override
    public void close() throws IOException {
        server.close();
        for (SocketChannel c : conns) c.close();
        if (socket != null) Files.deleteIfExists(socket);
    }
}

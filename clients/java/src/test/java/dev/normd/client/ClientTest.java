package dev.normd.client;

import dev.normd.testing.Check;
import dev.normd.testing.Registry;
import dev.normd.testing.Suite;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/** The client against {@link FakeNormd}: requests, the fallback table, framing, transports, close. */
public final class ClientTest implements Suite {
    private static final byte[] BODY = "{\"b\":2,\"a\":1}".getBytes(StandardCharsets.UTF_8);
    private static final byte[] INAPP = "in-app".getBytes(StandardCharsets.UTF_8);


    /** A client on the fake's socket, routing 100 % without GET /flags, answering "in-app" in-app. */
    static NormdClient.Builder builder(FakeNormd fake) {
        return NormdClient.builder().socketPath(fake.socket).rolloutPercent(100)
                .deadline(Duration.ofSeconds(2)).fallback(body -> INAPP);
    }

    private static NormdClient tcpClient(int port) {
        return NormdClient.builder().tcpPort(port).rolloutPercent(100).deadline(Duration.ofSeconds(2)).fallback(b -> INAPP).build();
    }

    private static void checkInApp(Result r, Reason reason) {
        Check.eq(Result.Path.INAPP, r.path(), "path");
        Check.eq(reason, r.reason(), "reason");
        Check.eq(INAPP, r.data(), "in-app data");
    }

    private static void checkSums(NormdClient c) {
        Stats s = c.stats();
        Check.eq(s.calls(), s.normdOk() + s.fallbackTotal() + s.errors(), "calls = normd_ok + fallback_total + errors");
    }

    @Override
    public void register(Registry t) {
        t.test("200: bytes and metadata back; deadline, selection, request id and headers sent", FakeNormd.onTempSocket(fake -> {
            // A long slack: the first call of the JVM loads the client's classes on a busy machine.
            try (NormdClient c = builder(fake).profile("orders").encoding("gzip").timeoutSlack(Duration.ofSeconds(5)).build()) {
                Result r = c.norm(BODY, CallOptions.key("k").withSchema("order.v1").withLevel(5)
                        .withDeadline(Duration.ofMillis(50)).withRequestId("req-7").withHeader("traceparent", "00-ab-cd-01"));
                Check.eq(Result.Path.NORMD, r.path(), "path");
                Check.eq(null, r.reason(), "no reason");
                Check.eq("{\"a\":1}", new String(r.bytes(), StandardCharsets.UTF_8), "data");
                Check.eq("identity", r.encoding(), "encoding");
                Check.eq(Shadow.digestOf("{\"a\":1}".getBytes(StandardCharsets.UTF_8)), r.digest(), "digest");
                Check.eq(7L, r.canonicalBytes(), "canonical bytes");
                Check.eq(7L, r.inputBytes(), "input bytes");
                Check.eq(7L, r.outputBytes(), "output bytes");
                Check.eq("rid-1", r.requestId(), "request id");
                Check.eq("unix", r.transport(), "transport");
                FakeNormd.Req req = fake.requests("/norm").get(0);
                Check.eq("POST", req.method(), "method");
                Check.eq("/norm?profile=orders&schema=order.v1&encoding=gzip&level=5", req.target(), "target");
                Check.eq("50", req.header("x-deadline-ms"), "X-Deadline-Ms");
                Check.eq("application/json", req.header("content-type"), "Content-Type");
                Check.eq("req-7", req.header("x-request-id"), "X-Request-Id");
                Check.eq("00-ab-cd-01", req.header("traceparent"), "passed-through header");
                Check.eq(BODY, req.body(), "body sent as is");
                Check.eq(1L, c.stats().normdOk(), "normd_ok");
                Check.eq(1L, c.counter("by_transport.unix"), "one exchange on unix");
            }
        }));

        t.test("deadline: the default is 20 ms, sub-millisecond budgets send 1", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = builder(fake).timeoutSlack(Duration.ofSeconds(5)).build()) {
                c.norm(BODY, CallOptions.none().withDeadline(Duration.ofNanos(10)));
                Check.eq("1", fake.requests("/norm").get(0).header("x-deadline-ms"), "at least 1");
            }
            try (NormdClient c = NormdClient.builder().socketPath(fake.socket).rolloutPercent(100).timeoutSlack(Duration.ofSeconds(5)).build()) {
                c.norm(BODY);
                Check.eq("20", fake.requests("/norm").get(1).header("x-deadline-ms"), "default 20");
                Check.eq("/norm", fake.requests("/norm").get(1).target(), "no selection, no query");
            }
        }));

        t.test("keep-alive: sequential calls share one connection", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = builder(fake).build()) {
                for (int i = 0; i < 20; i++) Check.that(c.norm(BODY).fromNormd(), "call " + i);
                Check.eq(1, fake.connections(), "connections");
            }
        }));

        Object[][] table = {
            {429, "overloaded", Reason.OVERLOADED, false},
            {503, "not_ready", Reason.UNAVAILABLE, false},
            {503, "draining", Reason.UNAVAILABLE, false},
            {503, "memory_pressure", Reason.UNAVAILABLE, false},
            {503, "disabled", Reason.DISABLED, true},
            {504, "deadline_exceeded", Reason.DEADLINE, false},
            {500, "internal", Reason.SERVER_ERROR, false},
            {401, "unauthorized", Reason.SERVER_ERROR, false},
            {403, "forbidden", Reason.SERVER_ERROR, false},
            {408, "timeout", Reason.SERVER_ERROR, false},
            {409, "conflict", Reason.SERVER_ERROR, false},
            {502, "bad_gateway", Reason.SERVER_ERROR, false},
        };
        for (Object[] row : table) {
            int status = (Integer) row[0];
            String code = (String) row[1];
            Reason reason = (Reason) row[2];
            boolean healthy = (Boolean) row[3];
            t.test(status + " " + code + " falls back as " + reason + (healthy ? " (breaker: success)" : " (breaker: failure)"), FakeNormd.onTempSocket(fake -> {
                fake.handler = (req, out) -> FakeNormd.problem(out, status, code);
                AtomicReference<FallbackContext> ctx = new AtomicReference<>();
                try (NormdClient c = builder(fake).failureThreshold(1).fallback((body, fc) -> {
                    ctx.set(fc);
                    return INAPP;
                }).build()) {
                    checkInApp(c.norm(BODY, CallOptions.key("k-1")), reason);
                    Check.eq("k-1", ctx.get().key(), "context key");
                    Check.eq(reason, ctx.get().reason(), "context reason");
                    NormdException cause = (NormdException) ctx.get().cause();
                    Check.eq(status, cause.status(), "cause status");
                    Check.eq(code, cause.code(), "cause code");
                    Check.eq("rid-2", cause.requestId(), "cause request id");
                    Check.eq(1L, c.stats().fallbackByReason().get(reason), "fallback_by_reason." + reason);
                    Check.eq(healthy ? "closed" : "open", c.stats().breaker().state(), "breaker (threshold 1)");
                    checkSums(c);
                }
            }));
        }

        t.test("a non-200 without a problem body still maps by status", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> out.write("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nbad");
            try (NormdClient c = builder(fake).build()) {
                checkInApp(c.norm(BODY), Reason.SERVER_ERROR);
            }
        }));

        t.test("a 200 without X-Normd-Digest breaks the contract: server_error", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> out.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
            try (NormdClient c = builder(fake).failureThreshold(1).build()) {
                checkInApp(c.norm(BODY), Reason.SERVER_ERROR);
                Check.eq("open", c.stats().breaker().state(), "counted as a failure");
            }
        }));

        for (int[] sc : new int[][] {{400}, {404}, {405}, {413}, {415}, {422}}) {
            int status = sc[0];
            t.test(status + " is thrown as NormdException, never a fallback", FakeNormd.onTempSocket(fake -> {
                String code = status == 422 ? "schema_violation" : "code_" + status;
                fake.handler = status == 422
                        ? (req, out) -> {
                            byte[] b = ("{\"type\":\"urn:normd:problem:schema_violation\",\"title\":\"t\",\"status\":422,\"detail\":\"d\","
                                    + "\"code\":\"schema_violation\",\"errors\":[{\"instance_path\":\"/order/id\",\"schema_path\":\"/properties\",\"message\":\"m\"}]}")
                                    .getBytes(StandardCharsets.UTF_8);
                            out.write("HTTP/1.1 422 X\r\nContent-Type: application/problem+json\r\nX-Request-Id: rid-3\r\nContent-Length: " + b.length + "\r\n\r\n");
                            out.write(b);
                        }
                        : (req, out) -> FakeNormd.problem(out, status, code);
                try (NormdClient c = builder(fake).failureThreshold(1).build()) {
                    NormdException e = Check.throwsA(NormdException.class, () -> c.norm(BODY));
                    Check.eq(status, e.status(), "status");
                    Check.eq(code, e.code(), "code");
                    if (status == 422) {
                        Check.eq("/order/id", e.errors().get(0).get("instance_path"), "errors[0].instance_path");
                        Check.eq("rid-3", e.requestId(), "request id");
                    } else {
                        Check.eq(List.of(), e.errors(), "no errors list");
                    }
                    Stats s = c.stats();
                    Check.eq(1L, s.errors(), "errors");
                    Check.eq(1L, s.errorsByCode().get(code), "errors_by_code");
                    Check.eq(0L, s.fallbackTotal(), "no fallback");
                    Check.eq("closed", s.breaker().state(), "a contract error is a healthy answer");
                    checkSums(c);
                }
            }));
        }

        t.test("connection: closed with no answer (fresh connection, no retry)", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> out.close();
            try (NormdClient c = builder(fake).build()) {
                checkInApp(c.norm(BODY), Reason.CONNECTION);
                Check.eq(0L, c.stats().retries(), "no retry on a fresh connection");
                Check.eq(1, fake.requests("/norm").size(), "one request");
            }
        }));

        t.test("connection: no socket file, and a socket file nobody listens on", () -> {
            Path dir = TestPaths.tempDir();
            try {
                try (NormdClient c = NormdClient.builder().socketPath(dir.resolve("missing.sock")).rolloutPercent(100)
                        .fallback(b -> INAPP).build()) {
                    Result r = c.norm(BODY);
                    checkInApp(r, Reason.CONNECTION);
                }
                Path stale = dir.resolve("dead.sock");
                // A closed server channel leaves its socket file behind: connect is refused.
                try (var ch = java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
                    ch.bind(java.net.UnixDomainSocketAddress.of(stale));
                }
                Check.that(Files.exists(stale), "the dead socket file stays");
                try (NormdClient c = NormdClient.builder().socketPath(stale).rolloutPercent(100).fallback(b -> INAPP).build()) {
                    checkInApp(c.norm(BODY), Reason.CONNECTION);
                }
            } finally {
                TestPaths.deleteTree(dir);
            }
        });

        t.test("timeout: a stalled normd costs the deadline, then falls back and hangs up", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> FakeNormd.hang(out);
            try (NormdClient c = builder(fake).timeoutSlack(Duration.ofMillis(5)).build()) {
                long t0 = System.nanoTime();
                Result r = c.norm(BODY, CallOptions.none().withDeadline(Duration.ofMillis(50)));
                long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
                checkInApp(r, Reason.TIMEOUT);
                Check.that(ms >= 55, "not before deadline + slack: " + ms + " ms");
                Check.that(r.data() == INAPP, "the in-app answer");
                // the connection was dropped, so the next call opens a new one
                fake.handler = (req, out) -> FakeNormd.ok(out, "{}".getBytes(StandardCharsets.UTF_8));
                Check.that(c.norm(BODY).fromNormd(), "next call answered");
                Check.eq(2, fake.connections(), "a timed-out connection is not reused");
            }
        }));

        t.test("timeout while the body is arriving still counts as timeout", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> {
                out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nContent-Length: 10\r\n\r\nabc");
                FakeNormd.hang(out);
            };
            try (NormdClient c = builder(fake).build()) {
                checkInApp(c.norm(BODY, CallOptions.none().withDeadline(Duration.ofMillis(30))), Reason.TIMEOUT);
            }
        }));

        t.test("a keep-alive connection normd had closed is retried once, inside the deadline", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> {
                FakeNormd.ok(out, "{}".getBytes(StandardCharsets.UTF_8));
                out.close(); // as normd's idle timeout would, without a Connection: close
            };
            try (NormdClient c = builder(fake).build()) {
                Check.that(c.norm(BODY).fromNormd(), "first");
                Check.that(c.norm(BODY).fromNormd(), "second, on a fresh connection after the retry");
                Check.eq(1L, c.stats().retries(), "retries");
                Check.eq(2, fake.requests("/norm").size(), "the dead connection never carried the request");
            }
        }));

        t.test("framing: a Content-Length body in pieces comes back byte-exact", FakeNormd.onTempSocket(fake -> {
            byte[] big = new byte[300_000];
            for (int i = 0; i < big.length; i++) big[i] = (byte) (i * 31);
            fake.handler = (req, out) -> {
                out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nContent-Length: " + big.length + "\r\n\r\n");
                for (int at = 0; at < big.length; at += 70_001) {
                    out.write(java.util.Arrays.copyOfRange(big, at, Math.min(big.length, at + 70_001)));
                    Thread.sleep(2); // separate reads on the client's side
                }
            };
            try (NormdClient c = builder(fake).build()) {
                Check.eq(big, c.norm(BODY).data(), "body");
                Check.that(c.norm(BODY).fromNormd(), "and the connection is reusable after it");
                Check.eq(1, fake.connections(), "connections");
            }
        }));

        t.test("framing: chunked body with an extension and a trailer, 100 Continue first", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> {
                out.write("HTTP/1.1 100 Continue\r\n\r\n");
                out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nTransfer-Encoding: chunked\r\n\r\n");
                out.write("5;ext=1\r\nhello\r\n");
                Thread.sleep(2);
                out.write("1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: y\r\n\r\n");
            };
            try (NormdClient c = builder(fake).build()) {
                Check.eq("hello world!", new String(c.norm(BODY).bytes(), StandardCharsets.US_ASCII), "body");
                Check.that(c.norm(BODY).fromNormd(), "reusable after a chunked answer");
                Check.eq(1, fake.connections(), "connections");
            }
        }));

        t.test("framing: Content-Length 0, and a close-delimited body", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nContent-Length: 0\r\n\r\n");
            try (NormdClient c = builder(fake).build()) {
                Check.eq(0, c.norm(BODY).bytes().length, "empty body");
                fake.handler = (req, out) -> {
                    out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nConnection: close\r\n\r\nuntil-eof");
                    out.close();
                };
                Check.eq("until-eof", new String(c.norm(BODY).bytes(), StandardCharsets.US_ASCII), "read to EOF");
                fake.handler = (req, out) -> FakeNormd.ok(out, "{}".getBytes(StandardCharsets.UTF_8));
                Check.that(c.norm(BODY).fromNormd(), "the next call");
                Check.eq(2, fake.connections(), "a close-delimited answer ends its connection");
            }
        }));

        t.test("framing: header names in any case, values trimmed, repeated ones joined", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> out.write("HTTP/1.1 200 Fine\r\nx-NORMD-Digest:\t sha-256=:x:  \r\nX-Normd-Schema: a\r\n"
                    + "x-normd-schema: b\r\nX-Other: ignored\r\ncontent-LENGTH: 2\r\n\r\nok");
            try (NormdClient c = builder(fake).build()) {
                Result r = c.norm(BODY);
                Check.eq("sha-256=:x:", r.digest(), "digest");
                Check.eq("a, b", r.schema(), "repeated header");
                Check.eq("ok", new String(r.bytes(), StandardCharsets.US_ASCII), "body");
            }
        }));

        t.test("an interrupted caller gives up at once: connection, interrupt kept", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> FakeNormd.hang(out);
            try (NormdClient c = builder(fake).build()) {
                Thread caller = Thread.currentThread();
                Thread interrupter = new Thread(() -> {
                    try {
                        Check.eventually(5000, "the call is out", () -> fake.requests("/norm").size() == 1);
                    } catch (InterruptedException e) {
                        return;
                    }
                    caller.interrupt();
                });
                interrupter.setDaemon(true);
                interrupter.start();
                Result r;
                try {
                    r = c.norm(BODY, CallOptions.none().withDeadline(Duration.ofSeconds(60)));
                } finally {
                    Check.that(Thread.interrupted(), "the interrupt status is kept (and cleared here)");
                }
                checkInApp(r, Reason.CONNECTION);
            }
        }));

        t.test("framing: a body cut short of its Content-Length is connection, never a partial result", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> {
                out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nContent-Length: 100\r\n\r\n" + "x".repeat(50));
                out.close();
            };
            try (NormdClient c = builder(fake).build()) {
                checkInApp(c.norm(BODY), Reason.CONNECTION);
                Check.eq(0L, c.stats().retries(), "a cut answer is never retried");
            }
        }));

        t.test("framing: a cut chunked body is connection", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> {
                out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhello");
                out.close();
            };
            try (NormdClient c = builder(fake).build()) {
                checkInApp(c.norm(BODY), Reason.CONNECTION);
            }
        }));

        t.test("framing: over maxResponseBytes by Content-Length (refused at the head) or by count", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> {
                out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nContent-Length: 1000000\r\n\r\n");
                FakeNormd.hang(out); // the body never comes: the client must not wait for it
            };
            try (NormdClient c = builder(fake).maxResponseBytes(1000).build()) {
                checkInApp(c.norm(BODY), Reason.CONNECTION);
                fake.handler = (req, out) -> out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + "200\r\n" + "y".repeat(512) + "\r\n" + "200\r\n" + "y".repeat(512) + "\r\n0\r\n\r\n");
                checkInApp(c.norm(BODY), Reason.CONNECTION);
                Check.eq(2L, c.stats().fallbackByReason().get(Reason.CONNECTION), "both");
            }
        }));

        t.test("garbage instead of HTTP is connection", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> {
                out.write("SSH-2.0-nope\r\n\r\n");
                out.close();
            };
            try (NormdClient c = builder(fake).build()) {
                checkInApp(c.norm(BODY), Reason.CONNECTION);
            }
        }));

        t.test("TCP alone, and TCP when the socket is missing", () -> {
            Path dir = TestPaths.tempDir();
            try (FakeNormd tcp = FakeNormd.tcp()) {
                try (NormdClient c = NormdClient.builder().tcpPort(tcp.port).rolloutPercent(100).fallback(b -> INAPP)
                        .profile("p").build()) {
                    // A generous budget: the JVM's first java.net.http exchange loads a lot of classes.
                    Result r = c.norm(BODY, CallOptions.none().withDeadline(Duration.ofMillis(9000)));
                    Check.eq("tcp", r.transport(), "transport");
                    Check.eq("{\"a\":1}", new String(r.bytes(), StandardCharsets.UTF_8), "data");
                    FakeNormd.Req req = tcp.requests("/norm").get(0);
                    Check.eq("9000", req.header("x-deadline-ms"), "X-Deadline-Ms over TCP");
                    Check.eq("/norm?profile=p", req.target(), "target over TCP");
                    Check.eq(BODY, req.body(), "body over TCP");
                    Check.eq(0L, c.stats().transportFailovers(), "no failover");
                }
                try (NormdClient c = NormdClient.builder().socketPath(dir.resolve("missing.sock")).tcpPort(tcp.port)
                        .rolloutPercent(100).deadline(Duration.ofSeconds(2)).fallback(b -> INAPP).build()) {
                    Result r = c.norm(BODY);
                    Check.eq("tcp", r.transport(), "transport");
                    Check.eq(1L, c.stats().transportFailovers(), "failovers");
                    Check.eq(1L, c.stats().exchangesTcp(), "exchanges on tcp");
                    Check.eq(0L, c.stats().exchangesUnix(), "exchanges on unix");
                }
                tcp.handler = (req, out) -> FakeNormd.problem(out, 429, "overloaded");
                try (NormdClient c = tcpClient(tcp.port)) {
                    checkInApp(c.norm(BODY), Reason.OVERLOADED);
                }
                tcp.handler = (req, out) -> FakeNormd.problem(out, 422, "schema_violation");
                try (NormdClient c = tcpClient(tcp.port)) {
                    Check.eq("schema_violation", Check.throwsA(NormdException.class, () -> c.norm(BODY)).code(), "code over TCP");
                }
                tcp.handler = (req, out) -> FakeNormd.hang(out);
                try (NormdClient c = tcpClient(tcp.port)) {
                    checkInApp(c.norm(BODY, CallOptions.none().withDeadline(Duration.ofMillis(30))), Reason.TIMEOUT);
                }
                tcp.handler = (req, out) -> {
                    out.write("HTTP/1.1 200 OK\r\nX-Normd-Digest: x\r\nContent-Length: 100\r\n\r\nabc");
                    out.close();
                };
                try (NormdClient c = tcpClient(tcp.port)) {
                    checkInApp(c.norm(BODY), Reason.CONNECTION);
                }
            } finally {
                TestPaths.deleteTree(dir);
            }
        });

        t.test("TCP to a port nobody listens on is connection", () -> {
            int port;
            try (var s = java.nio.channels.ServerSocketChannel.open()) {
                s.bind(new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0));
                port = ((java.net.InetSocketAddress) s.getLocalAddress()).getPort();
            }
            try (NormdClient c = tcpClient(port)) {
                checkInApp(c.norm(BODY), Reason.CONNECTION);
            }
        });

        t.test("without an in-app function a fallback throws NormdUnavailableException", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> FakeNormd.problem(out, 429, "overloaded");
            try (NormdClient c = NormdClient.builder().socketPath(fake.socket).rolloutPercent(100).build()) {
                NormdUnavailableException e = Check.throwsA(NormdUnavailableException.class, () -> c.norm(BODY));
                Check.eq(Reason.OVERLOADED, e.reason(), "reason");
                Check.that(e.getCause() instanceof NormdException, "cause is the problem");
                checkSums(c);
            }
        }));

        t.test("the in-app function gets the body as given; its exception reaches the caller", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> FakeNormd.problem(out, 503, "draining");
            AtomicReference<byte[]> seen = new AtomicReference<>();
            try (NormdClient c = builder(fake).fallback(body -> {
                seen.set(body);
                if (body.length == 1) throw new IllegalStateException("in-app failed");
                return INAPP;
            }).build()) {
                c.norm(BODY);
                Check.that(seen.get() == BODY, "the same array");
                Check.eq("in-app failed", Check.throwsA(IllegalStateException.class, () -> c.norm(new byte[] {'1'})).getMessage(), "propagated");
            }
        }));

        t.test("bad call options throw before anything is sent or counted", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = builder(fake).build()) {
                Check.throwsA(IllegalArgumentException.class, () -> CallOptions.none().withHeader("X-Bad\r\nInjected", "v"));
                Check.throwsA(IllegalArgumentException.class, () -> CallOptions.none().withHeader("X-Ok", "a\r\nInjected: 1"));
                Check.throwsA(IllegalArgumentException.class, () -> CallOptions.none().withHeader("X-Ok", "\u0100"));
                Check.throwsA(IllegalArgumentException.class, () -> CallOptions.none().withHeader("Content-Length", "1"));
                Check.throwsA(IllegalArgumentException.class, () -> CallOptions.none().withHeader("x-deadline-ms", "1"));
                Check.throwsA(IllegalArgumentException.class, () -> CallOptions.none().withDeadline(Duration.ZERO));
                Check.throwsA(IllegalArgumentException.class, () -> CallOptions.none().withRequestId("a\nb"));
                Check.throwsA(NullPointerException.class, () -> c.norm(null));
                Check.eq(0L, c.stats().calls(), "nothing counted");
                Check.eq(0, fake.requests().size(), "nothing sent");
            }
        }));

        t.test("builder refuses nonsense", () -> {
            Check.throwsA(IllegalStateException.class, () -> NormdClient.builder().build());
            Check.throwsA(IllegalArgumentException.class, () -> NormdClient.builder().tcpPort(0));
            Check.throwsA(IllegalArgumentException.class, () -> NormdClient.builder().rolloutPercent(101));
            Check.throwsA(IllegalArgumentException.class, () -> NormdClient.builder().deadline(Duration.ofMillis(-1)));
            Check.throwsA(IllegalArgumentException.class, () -> NormdClient.builder().failureThreshold(0));
            Check.throwsA(IllegalArgumentException.class, () -> NormdClient.builder().maxConnections(0));
            Check.throwsA(IllegalArgumentException.class, () -> NormdClient.builder().maxResponseBytes(0));
        });

        t.test("concurrent callers share a bounded pool", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = builder(fake).maxConnections(4).build()) {
                ExecutorService pool = Executors.newFixedThreadPool(16);
                try {
                    List<Future<Integer>> fs = new ArrayList<>();
                    for (int th = 0; th < 16; th++) {
                        fs.add(pool.submit(() -> {
                            int ok = 0;
                            for (int i = 0; i < 50; i++) if (c.norm(BODY).fromNormd()) ok++;
                            return ok;
                        }));
                    }
                    int ok = 0;
                    for (Future<Integer> f : fs) ok += f.get(60, TimeUnit.SECONDS);
                    Check.eq(800, ok, "every call answered by normd");
                } finally {
                    pool.shutdownNow();
                }
                Check.that(fake.connections() <= 4, "at most 4 connections, saw " + fake.connections());
                Check.eq(800L, c.stats().normdOk(), "normd_ok");
                checkSums(c);
            }
        }));

        t.test("a caller waiting for a pooled connection past its deadline falls back as timeout", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> FakeNormd.hang(out);
            try (NormdClient c = builder(fake).maxConnections(1).build()) {
                ExecutorService pool = Executors.newSingleThreadExecutor();
                try {
                    Future<Result> holder = pool.submit(() -> c.norm(BODY, CallOptions.none().withDeadline(Duration.ofSeconds(5))));
                    Check.eventually(5000, "the first call is out", () -> fake.requests("/norm").size() == 1);
                    checkInApp(c.norm(BODY, CallOptions.none().withDeadline(Duration.ofMillis(20))), Reason.TIMEOUT);
                    Check.eq(1, fake.requests("/norm").size(), "the second call never got a connection");
                    c.close();
                    checkInApp(holder.get(10, TimeUnit.SECONDS), Reason.CONNECTION);
                } finally {
                    pool.shutdownNow();
                }
            }
        }));

        t.test("close(): a call still out falls back at once as connection; later calls throw", FakeNormd.onTempSocket(fake -> {
            fake.handler = (req, out) -> FakeNormd.hang(out);
            NormdClient c = builder(fake).build();
            ExecutorService pool = Executors.newSingleThreadExecutor();
            try {
                Future<Result> out = pool.submit(() -> c.norm(BODY, CallOptions.none().withDeadline(Duration.ofSeconds(30))));
                Check.eventually(5000, "the call is out", () -> fake.requests("/norm").size() == 1);
                c.close();
                checkInApp(out.get(10, TimeUnit.SECONDS), Reason.CONNECTION);
                Check.throwsA(IllegalStateException.class, () -> c.norm(BODY));
                Check.eq(false, c.refreshFlags(), "no refresh after close");
            } finally {
                pool.shutdownNow();
                c.close();
            }
        }));

        t.test("close() ends a call still out over TCP too", () -> {
            try (FakeNormd tcp = FakeNormd.tcp()) {
                tcp.handler = (req, out) -> FakeNormd.hang(out);
                NormdClient c = NormdClient.builder().tcpPort(tcp.port).rolloutPercent(100).fallback(b -> INAPP).build();
                ExecutorService pool = Executors.newSingleThreadExecutor();
                try {
                    Future<Result> out = pool.submit(() -> c.norm(BODY, CallOptions.none().withDeadline(Duration.ofSeconds(60))));
                    Check.eventually(10_000, "the call is out", () -> tcp.requests("/norm").size() == 1);
                    c.close();
                    checkInApp(out.get(10, TimeUnit.SECONDS), Reason.CONNECTION);
                } finally {
                    pool.shutdownNow();
                    c.close();
                }
            }
        });

        t.test("forEachCounter names the kit's vocabulary, counter() reads each", FakeNormd.onTempSocket(fake -> {
            try (NormdClient c = builder(fake).build()) {
                c.norm(BODY);
                Map<String, Long> all = new java.util.TreeMap<>();
                c.forEachCounter(all::put);
                for (String name : List.of("calls", "normd_ok", "fallback_total", "errors", "breaker.opened_total",
                        "fallback_by_reason.timeout", "fallback_by_reason.shadow", "errors_by_code.schema_violation",
                        "flags.refresh_ok", "shadow.mismatches", "retries", "by_transport.unix")) {
                    Check.that(all.containsKey(name), "has " + name);
                    Check.eq(all.get(name), c.counter(name), "counter(" + name + ")");
                }
                Check.eq(1L, all.get("normd_ok"), "normd_ok");
                Check.eq(0L, c.counter("errors_by_code.never_seen"), "unknown code reads 0");
                Check.eq(0L, c.counter("no.such.counter"), "unknown name reads 0");
            }
        }));
    }
}

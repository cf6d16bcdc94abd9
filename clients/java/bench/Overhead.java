import dev.normd.client.CallOptions;
import dev.normd.client.NormdClient;
import dev.normd.client.NormdProcess;
import dev.normd.client.Result;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;

/**
 * What the client itself costs per call: a 4 KB POST /norm through NormdClient versus
 * the same request over a bare blocking Unix channel with the least framing that works
 * (write the request, read the head, read Content-Length bytes), to the same normd, on
 * the same keep-alive-style single connection, interleaved call by call so both see the
 * same machine. Reports median and p99 of each and of the difference, and the bytes each
 * allocates per call on the calling thread (the heap cost this project is about).
 *
 *   NORMD_BIN=... ./test.sh bench [--calls 2000] [--warmup 2000] [--payloads DIR] [--max-seconds 120]
 */
public final class Overhead {
    public static void main(String[] args) throws Exception {
        int calls = 2000;
        int warmup = 2000;
        long maxSeconds = 120;
        Path payloads = Path.of("/work/shared/bench/payloads/4k");
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--calls" -> calls = Integer.parseInt(args[i + 1]);
                case "--warmup" -> warmup = Integer.parseInt(args[i + 1]);
                case "--payloads" -> payloads = Path.of(args[i + 1]);
                case "--max-seconds" -> maxSeconds = Long.parseLong(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        List<byte[]> bodies = load(payloads);
        Path bin = Path.of(System.getProperty("normd.bin"));
        Path dir = Files.createTempDirectory(Path.of("/tmp"), "normd-bench-");
        try (NormdProcess normd = NormdProcess.start(bin, dir, "{\"norm\":{\"enabled\":true,\"rollout_percent\":100}}", List.of());
             NormdClient client = NormdClient.builder().socketPath(normd.socket).rolloutPercent(100)
                     .deadline(Duration.ofSeconds(1)).maxConnections(1).build();
             Bare bare = new Bare(normd.socket)) {
            long until = System.nanoTime() + maxSeconds * 1_000_000_000L;
            run(client, bare, bodies, warmup, until, null);
            Sample s = new Sample(calls);
            int done = run(client, bare, bodies, calls, until, s);
            s.report(done, bin, payloads, bodies);
        } finally {
            try (Stream<Path> w = Files.walk(dir)) {
                w.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    /** Calls alternately through the bare channel and the client; returns how many pairs were done. */
    private static int run(NormdClient client, Bare bare, List<byte[]> bodies, int n, long until, Sample s) throws IOException {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long tid = Thread.currentThread().getId();
        CallOptions opts = CallOptions.none().withDeadline(Duration.ofSeconds(1));
        int i = 0;
        for (; i < n && System.nanoTime() < until; i++) {
            byte[] body = bodies.get(i % bodies.size());
            long a0 = mx.getThreadAllocatedBytes(tid);
            long t0 = System.nanoTime();
            int len = bare.call(body);
            long t1 = System.nanoTime();
            long a1 = mx.getThreadAllocatedBytes(tid);
            Result r = client.norm(body, opts);
            long t2 = System.nanoTime();
            long a2 = mx.getThreadAllocatedBytes(tid);
            if (!r.fromNormd() || r.bytes().length != len) throw new IllegalStateException("client answer differs: " + r);
            if (s != null) s.add(i, t1 - t0, t2 - t1, a1 - a0, a2 - a1);
        }
        return i;
    }

    private static List<byte[]> load(Path dir) throws IOException {
        List<byte[]> out = new ArrayList<>();
        if (Files.isDirectory(dir)) {
            try (Stream<Path> s = Files.list(dir)) {
                for (Path p : s.filter(f -> f.toString().endsWith(".json")).sorted().toList()) out.add(Files.readAllBytes(p));
            }
        }
        if (out.isEmpty()) {
            // No payload set here: a synthetic 4 KB document, so the benchmark still runs.
            StringBuilder b = new StringBuilder("{\"items\":[");
            for (int i = 0; b.length() < 4000; i++) b.append(i == 0 ? "" : ",").append("{\"sku\":\"SKU-").append(i).append("\",\"qty\":").append(i % 7).append('}');
            out.add(b.append("]}").toString().getBytes(StandardCharsets.UTF_8));
        }
        return out;
    }

    /** The baseline: one blocking Unix channel, the request written by hand, the answer read by Content-Length. */
    private static final class Bare implements AutoCloseable {
        private final SocketChannel ch;
        private final ByteBuffer in = ByteBuffer.allocate(1 << 20);

        Bare(Path socket) throws IOException {
            ch = SocketChannel.open(StandardProtocolFamily.UNIX);
            ch.connect(UnixDomainSocketAddress.of(socket));
        }

        int call(byte[] body) throws IOException {
            byte[] head = ("POST /norm HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Deadline-Ms: 1000\r\n"
                    + "Content-Length: " + body.length + "\r\n\r\n").getBytes(StandardCharsets.ISO_8859_1);
            ByteBuffer[] out = {ByteBuffer.wrap(head), ByteBuffer.wrap(body)};
            while (out[1].hasRemaining()) ch.write(out);
            in.clear();
            int headEnd = -1;
            while (headEnd < 0) {
                if (ch.read(in) < 0) throw new IOException("closed");
                headEnd = indexOf(in.array(), in.position());
            }
            String h = new String(in.array(), 0, headEnd, StandardCharsets.ISO_8859_1).toLowerCase(Locale.ROOT);
            int at = h.indexOf("content-length:");
            int len = Integer.parseInt(h.substring(at + 15, h.indexOf('\r', at)).trim());
            int total = headEnd + 4 + len;
            while (in.position() < total) if (ch.read(in) < 0) throw new IOException("closed");
            if (!h.startsWith("http/1.1 200")) throw new IOException("bare call: " + h.lines().findFirst().orElse(""));
            return len;
        }

        private static int indexOf(byte[] b, int end) {
            for (int i = 0; i + 3 < end; i++) if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n') return i;
            return -1;
        }

        @Override
        public void close() throws IOException {
            ch.close();
        }
    }

    private static final class Sample {
        final long[] bare;
        final long[] client;
        final long[] diff;
        final long[] bareAlloc;
        final long[] clientAlloc;

        Sample(int n) {
            bare = new long[n];
            client = new long[n];
            diff = new long[n];
            bareAlloc = new long[n];
            clientAlloc = new long[n];
        }

        void add(int i, long b, long c, long ba, long ca) {
            bare[i] = b;
            client[i] = c;
            diff[i] = c - b;
            bareAlloc[i] = ba;
            clientAlloc[i] = ca;
        }

        void report(int n, Path bin, Path payloads, List<byte[]> bodies) {
            double avgSize = bodies.stream().mapToInt(b -> b.length).average().orElse(0);
            System.out.printf(Locale.ROOT, "normd: %s%npayloads: %s (%d files, %.0f bytes on average)%n", bin, payloads, bodies.size(), avgSize);
            System.out.printf(Locale.ROOT, "%d sequential pairs of calls after warm-up, over the Unix socket%n", n);
            System.out.printf(Locale.ROOT, "%-22s %10s %10s%n", "", "median", "p99");
            line("bare channel (us)", bare, n, 1e3);
            line("NormdClient (us)", client, n, 1e3);
            line("client - bare (us)", diff, n, 1e3);
            line("bare alloc (bytes)", bareAlloc, n, 1);
            line("client alloc (bytes)", clientAlloc, n, 1);
        }

        private static void line(String name, long[] v, int n, double unit) {
            long[] s = Arrays.copyOf(v, n);
            Arrays.sort(s);
            System.out.printf(Locale.ROOT, "%-22s %10.1f %10.1f%n", name, s[n / 2] / unit, s[Math.min(n - 1, (int) Math.ceil(n * 0.99) - 1)] / unit);
        }
    }
}

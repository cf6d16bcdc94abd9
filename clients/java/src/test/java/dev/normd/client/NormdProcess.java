package dev.normd.client;

import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A real normd started for a test: {@code serve} on a socket in a temp dir and an
 * ephemeral 127.0.0.1 port (read from its "normd serving" log line), ready once
 * {@code GET /readyz} answers 200 over the socket. {@link #close()} always ends it.
 */
public final class NormdProcess implements AutoCloseable {
    public final Path socket;
    public final Path flagsFile;
    public final Path log;
    public final int tcpPort;
    private final Process process;

    private NormdProcess(Process process, Path socket, Path flagsFile, Path log, int tcpPort) {
        this.process = process;
        this.socket = socket;
        this.flagsFile = flagsFile;
        this.log = log;
        this.tcpPort = tcpPort;
    }

    /** Starts {@code bin} in {@code dir}; {@code flagsJson} (or null for none) becomes its flags file. */
    public static NormdProcess start(Path bin, Path dir, String flagsJson, List<String> extraArgs) throws Exception {
        Path socket = dir.resolve("normd.sock");
        Path flags = dir.resolve("flags.json");
        Path log = dir.resolve("normd.log");
        if (flagsJson != null) Files.writeString(flags, flagsJson);
        List<String> cmd = new ArrayList<>(List.of(bin.toString(), "serve", "--socket", socket.toString(),
                "--listen", "127.0.0.1:0", "--schemas", TestPaths.repo().resolve("schemas").toString(),
                "--flags", flags.toString(), "--flags-poll-ms", "50", "--drain-delay-ms", "0"));
        cmd.addAll(extraArgs);
        Process p = new ProcessBuilder(cmd).redirectOutput(dir.resolve("normd.out").toFile()).redirectError(log.toFile()).start();
        try {
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            int port = 0;
            while (true) {
                if (port == 0) port = listenPort(log);
                if (port != 0 && ready(socket)) return new NormdProcess(p, socket, flags, log, port);
                if (!p.isAlive()) throw new IllegalStateException("normd exited " + p.exitValue() + ": " + Files.readString(log));
                if (System.nanoTime() > until) throw new IllegalStateException("normd not ready within 10 s: " + Files.readString(log));
                Thread.sleep(50);
            }
        } catch (Exception | Error e) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
            throw e;
        }
    }

    /** Replaces the flags file atomically, as a ConfigMap update does. */
    public void writeFlags(String json) throws IOException {
        Path tmp = flagsFile.resolveSibling("flags.json.tmp");
        Files.writeString(tmp, json);
        Files.move(tmp, flagsFile, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /** SIGTERM and wait (bounded); the exit code, or -1 if it had to be killed. */
    public int terminate(long timeoutSeconds) throws InterruptedException {
        process.destroy();
        if (process.waitFor(timeoutSeconds, TimeUnit.SECONDS)) return process.exitValue();
        kill();
        return -1;
    }

    /** SIGKILL and wait (bounded). */
    public void kill() throws InterruptedException {
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
    }

    public boolean alive() {
        return process.isAlive();
    }

    @Override
    public void close() throws InterruptedException {
        if (process.isAlive()) terminate(20);
    }

    /** The TCP port from the log line {@code "msg":"normd serving"} ({@code "listen":"127.0.0.1:PORT"}), or 0. */
    static int listenPort(Path log) {
        try {
            for (String line : Files.readAllLines(log)) {
                if (!line.contains("normd serving")) continue;
                Object listen = ((Map<?, ?>) Json.parse(line)).get("listen");
                if (listen instanceof String s && s.contains(":")) return Integer.parseInt(s.substring(s.lastIndexOf(':') + 1));
            }
        } catch (IOException | RuntimeException e) {
            // not written yet
        }
        return 0;
    }

    static boolean ready(Path socket) {
        try {
            get(socket, "/readyz");
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /** The body of a 200 to GET {@code path} over the Unix socket; IOException on anything else. */
    static byte[] get(Path socket, String path) throws IOException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        UnixConnection c = UnixConnection.open(UnixDomainSocketAddress.of(socket), deadline);
        try {
            Transport.Reply r = c.exchange(new Transport.Request("GET", path, new String[0], null), deadline, 1 << 24, false);
            if (r.status() != 200) throw new IOException("GET " + path + " answered " + r.status());
            return r.body();
        } finally {
            c.close();
        }
    }
}

package dev.normd.client;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/** Where the tests find the repository, the kit and the normd binary (set by test.sh), and temp dirs. */
final class TestPaths {
    private TestPaths() {}

    /** The repository root: -Dnormd.repo, else two levels above the working directory (clients/java). */
    static Path repo() {
        String p = System.getProperty("normd.repo");
        return (p != null ? Path.of(p) : Path.of("").toAbsolutePath().getParent().getParent()).toAbsolutePath();
    }

    static Path conformance() {
        return repo().resolve("clients/conformance");
    }

    /** The normd binary from -Dnormd.bin (test.sh passes NORMD_BIN), or null. */
    static Path normdBin() {
        String p = System.getProperty("normd.bin");
        return p == null || p.isEmpty() ? null : Path.of(p);
    }

    /** A short temp dir (a Unix socket path must stay under ~100 bytes). */
    static Path tempDir() throws IOException {
        return Files.createTempDirectory(Path.of("/tmp"), "normd-java-");
    }

    static void deleteTree(Path dir) {
        if (dir == null) return;
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort: a temp dir
                }
            });
        } catch (IOException ignored) {
            // already gone
        }
    }
}

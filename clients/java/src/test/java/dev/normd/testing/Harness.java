package dev.normd.testing;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs the suites named on the command line, each case on its own thread with a bounded
 * time, and ends with one line {@code N passed, N failed, N skipped}; the exit code is 1
 * on any failure, or when nothing passed at all (a run that tests nothing is no success).
 */
public final class Harness {
    /** A case that has not ended by then is failed and left behind (its thread is a daemon). */
    private static final long CASE_TIMEOUT_SECONDS = 120;

    public static void main(String[] args) throws Exception {
        PrintStream out = System.out;
        int passed = 0;
        int failed = 0;
        int skipped = 0;
        List<String> failures = new ArrayList<>();
        String only = System.getenv("TEST_FILTER"); // a substring of the case names to run, for debugging
        for (String className : args) {
            Registry r = new Registry();
            String suite = className.substring(className.lastIndexOf('.') + 1);
            try {
                ((Suite) Class.forName(className).getDeclaredConstructor().newInstance()).register(r);
            } catch (Throwable t) {
                failed++;
                failures.add(suite + ": could not register: " + t);
                out.println("FAIL " + suite + " (registration): " + t);
                continue;
            }
            for (Registry.Case c : r.cases) {
                String name = suite + " > " + c.name();
                if (only != null && !name.contains(only)) continue;
                if (c.skipReason() != null) {
                    skipped++;
                    out.println("SKIP " + name + " — " + c.skipReason());
                    continue;
                }
                long t0 = System.nanoTime();
                Throwable error = run(c.body());
                long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
                if (error == null) {
                    passed++;
                    out.println("ok   " + name + " (" + ms + " ms)");
                } else {
                    failed++;
                    failures.add(name + ": " + error);
                    out.println("FAIL " + name + " (" + ms + " ms)");
                    error.printStackTrace(out);
                }
            }
        }
        out.println();
        for (String f : failures) out.println("failed: " + f);
        out.println(passed + " passed, " + failed + " failed, " + skipped + " skipped");
        out.flush();
        System.exit(failed > 0 || passed == 0 ? 1 : 0);
    }

    private static Throwable run(Registry.Body body) throws InterruptedException {
        Throwable[] error = new Throwable[1];
        Thread t = new Thread(() -> {
            try {
                body.run();
            } catch (Throwable e) {
                error[0] = e;
            }
        }, "test");
        t.setDaemon(true);
        t.start();
        t.join(TimeUnit.SECONDS.toMillis(CASE_TIMEOUT_SECONDS));
        if (t.isAlive()) {
            AssertionError e = new AssertionError("did not end within " + CASE_TIMEOUT_SECONDS + " s");
            e.setStackTrace(t.getStackTrace());
            t.interrupt();
            return e;
        }
        return error[0];
    }
}

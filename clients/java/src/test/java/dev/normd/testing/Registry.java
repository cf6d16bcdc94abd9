package dev.normd.testing;

import java.util.ArrayList;
import java.util.List;

/** The cases a suite registers, in order. */
public final class Registry {
    /** A test body; it fails by throwing (AssertionError from {@link Check}, or anything else). */
    @FunctionalInterface
    public interface Body {
        void run() throws Exception;
    }

    record Case(String name, Body body, String skipReason) {}

    final List<Case> cases = new ArrayList<>();

    public void test(String name, Body body) {
        cases.add(new Case(name, body, null));
    }

    /** A case that cannot run here; reported loudly as skipped, never as passed. */
    public void skip(String name, String reason) {
        cases.add(new Case(name, null, reason));
    }
}

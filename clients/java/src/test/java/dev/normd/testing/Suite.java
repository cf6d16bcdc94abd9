package dev.normd.testing;

/** A class of tests: registers its cases (fixed ones, or one per data file) with the harness. */
public interface Suite {
    void register(Registry tests) throws Exception;
}

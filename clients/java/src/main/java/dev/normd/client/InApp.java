package dev.normd.client;

/**
 * The app's own implementation of the same job (normalize, validate, compress on its
 * heap), called on the caller's thread whenever normd is not used. What it returns is
 * {@link Result#data()}. An exception it throws reaches the caller of norm() as is.
 */
@FunctionalInterface
public interface InApp {
    Object apply(byte[] body, FallbackContext context);
}

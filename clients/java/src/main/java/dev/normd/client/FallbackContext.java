package dev.normd.client;

/**
 * What the in-app function is told about the call it answers.
 *
 * @param reason why normd was not used
 * @param key    the call's rollout key, or null
 * @param cause  the failure behind the fallback (a {@link NormdException} for a refusal with a
 *               problem, an IOException for a transport failure), or null when no I/O happened
 */
public record FallbackContext(Reason reason, String key, Throwable cause) {}

package dev.normd.client;

import java.util.Map;

/**
 * The routing flag read from {@code GET /flags}: {@code {"flags": {"norm": {...}}, ...}}.
 * A missing flag or field means normd's default (enabled, rollout 100, shadow 0); a
 * document of another shape, or a field of the wrong type, is refused so the last good
 * flags stay in force.
 */
record FlagState(boolean enabled, int rolloutPercent, int shadowPercent, String version, String mtime) {

    static FlagState fromDocument(Object doc, String flagName) {
        if (!(doc instanceof Map<?, ?> top) || !(top.get("flags") instanceof Map<?, ?> flags)) {
            throw new IllegalArgumentException("GET /flags: the body is not a flags document");
        }
        Object raw = flags.get(flagName);
        String version = text(top.get("version"));
        String mtime = text(top.get("mtime"));
        if (raw == null) return new FlagState(true, 100, 0, version, mtime);
        if (!(raw instanceof Map<?, ?> flag)) throw new IllegalArgumentException("flag " + flagName + " is not an object");
        Object enabled = flag.containsKey("enabled") ? flag.get("enabled") : Boolean.TRUE;
        if (!(enabled instanceof Boolean)) throw new IllegalArgumentException("flag " + flagName + ".enabled is not a boolean");
        int rollout = percent(flag, "rollout_percent", 100, flagName);
        int shadow = percent(flag, "shadow_percent", 0, flagName);
        return new FlagState((Boolean) enabled, rollout, shadow, version, mtime);
    }

    /** A percentage field as an integer 0..100: fractions round down, out-of-range values clamp. */
    private static int percent(Map<?, ?> flag, String field, int dflt, String flagName) {
        if (!flag.containsKey(field)) return dflt;
        Object v = flag.get(field);
        if (!(v instanceof Number n)) throw new IllegalArgumentException("flag " + flagName + "." + field + " is not a number");
        return clampPercent(n.doubleValue());
    }

    static int clampPercent(double p) {
        if (Double.isNaN(p) || p <= 0) return 0;
        return p >= 100 ? 100 : (int) Math.floor(p);
    }

    private static String text(Object v) {
        return v == null ? null : String.valueOf(v);
    }
}

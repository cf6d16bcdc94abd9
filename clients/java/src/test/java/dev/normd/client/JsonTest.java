package dev.normd.client;

import dev.normd.testing.Check;
import dev.normd.testing.Registry;
import dev.normd.testing.Suite;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

public final class JsonTest implements Suite {
    @Override
    public void register(Registry t) {
        t.test("every kind of value, in order, with whitespace", () -> {
            Object v = Json.parse(" {\"s\":\"x\", \"i\": -12, \"f\": 1.5e2, \"t\": true, \"n\": null, \"a\": [1, [], {}], \"o\": {\"k\": false}}\n");
            Map<?, ?> m = (Map<?, ?>) v;
            Check.eq(List.of("s", "i", "f", "t", "n", "a", "o"), List.copyOf(m.keySet()), "member order");
            Check.eq("x", m.get("s"), "string");
            Check.eq(-12L, m.get("i"), "integer is a Long");
            Check.eq(150.0, m.get("f"), "fraction/exponent is a Double");
            Check.eq(true, m.get("t"), "true");
            Check.that(m.containsKey("n") && m.get("n") == null, "null member present");
            Check.eq(List.of(1L, List.of(), Map.of()), m.get("a"), "array");
            Check.eq(Map.of("k", false), m.get("o"), "object");
        });
        t.test("numbers: long range, beyond it a double, zero forms", () -> {
            Check.eq(Long.MAX_VALUE, Json.parse("9223372036854775807"), "max long");
            Check.eq(Long.MIN_VALUE, Json.parse("-9223372036854775808"), "min long");
            Check.eq(9.223372036854775808E18, Json.parse("9223372036854775808"), "past long");
            Check.eq(0L, Json.parse("0"), "zero");
            Check.eq(-0.0, Json.parse("-0.0"), "negative zero double");
            Check.eq(0.0, Json.parse("1e-400"), "underflow is 0");
        });
        t.test("string escapes, surrogate pairs, non-ASCII UTF-8", () -> {
            Check.eq("a\"\\/\b\f\n\r\tz", Json.parse("\"a\\\"\\\\\\/\\b\\f\\n\\r\\tz\""), "simple escapes");
            Check.eq("é😀", Json.parse("\"\\u00e9\\ud83d\\ude00\""), "\\u escapes and a pair");
            Check.eq("é😀", Json.parse("\"é😀\"".getBytes(StandardCharsets.UTF_8)), "raw UTF-8");
        });
        String[] bad = {
            "", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "[1 2]", "01", "1.", ".5", "+1", "-", "1e", "NaN",
            "Infinity", "1e400", "'a'", "\"a", "\"\\x\"", "\"\\u12\"", "\"tab\there\"", "\"\\ud800\"", "\"\\udc00x\"",
            "\"\\ud800\\u0041\"", "tru", "nul", "{\"a\":1} x", "[1]]", "{\"a\":1,\"a\":2}", "{1:2}",
        };
        for (String b : bad) {
            t.test("refuses " + b.replace("\t", "\\t"), () -> Check.throwsA(Json.ParseException.class, () -> Json.parse(b)));
        }
        t.test("refuses invalid UTF-8 and nesting past the limit, accepts it at the limit", () -> {
            Check.throwsA(Json.ParseException.class, () -> Json.parse(new byte[] {'"', (byte) 0xc3, '"'}));
            Check.throwsA(Json.ParseException.class, () -> Json.parse(new byte[] {'"', (byte) 0xed, (byte) 0xa0, (byte) 0x80, '"'}));
            String ok = "[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH);
            Check.that(Json.parse(ok) instanceof List, "depth " + Json.MAX_DEPTH + " parses");
            String deep = "[".repeat(Json.MAX_DEPTH + 1) + "]".repeat(Json.MAX_DEPTH + 1);
            Json.ParseException e = Check.throwsA(Json.ParseException.class, () -> Json.parse(deep));
            Check.that(e.getMessage().contains("nesting"), "names the nesting: " + e.getMessage());
            String hostile = "[".repeat(100_000);
            Check.throwsA(Json.ParseException.class, () -> Json.parse(hostile));
        });
        t.test("results are unmodifiable", () -> {
            Map<?, ?> m = (Map<?, ?>) Json.parse("{\"a\":[1]}");
            Check.throwsA(UnsupportedOperationException.class, () -> m.clear());
            Check.throwsA(UnsupportedOperationException.class, () -> ((List<?>) m.get("a")).clear());
        });
    }
}

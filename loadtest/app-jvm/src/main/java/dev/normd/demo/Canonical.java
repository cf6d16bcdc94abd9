package dev.normd.demo;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParseException;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.io.schubfach.DoubleToDecimal;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The in-app "normalize" half: Jackson's streaming parser reads the body into a small tree
 * (objects are {@link TreeMap}s, so members come out sorted by UTF-16 code units, as
 * RFC 8785 wants), string values are trimmed on the way in, numbers keep the text RFC 8785
 * will print; {@link #write} serializes the tree canonically. The rules are normd's
 * ({@code src/pipeline/canonical.rs}, the {@code bench} profile): I-JSON (no duplicate
 * member names, no lone surrogates), nesting at most 128, numbers {@code safe} (an integer
 * beyond ±2^53 whose canonical text has another value, or a number outside the double
 * range, is refused), {@code trim} = Rust's {@code str::trim} (Unicode White_Space).
 */
final class Canonical {
    static final int MAX_DEPTH = 128;
    private static final double MAX_SAFE = 9007199254740992.0; // 2^53

    /** JSON null in the tree (a Map value of Java null would be ambiguous). */
    static final Object NULL = new Object() {
        @Override
        public String toString() {
            return "null";
        }
    };

    /** A JSON number: its double and the text RFC 8785 prints for it. */
    static final class Num {
        final double value;
        final String canonical;

        Num(double value, String canonical) {
            this.value = value;
            this.canonical = canonical;
        }

        /** JSON Schema's "integer": a number with no fractional part. */
        boolean integral() {
            return value == Math.rint(value) && !Double.isInfinite(value);
        }
    }

    private static final JsonFactory FACTORY = JsonFactory.builder()
            .enable(com.fasterxml.jackson.core.StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

    private Canonical() {}

    // ------------------------------------------------------------------ parse

    /** Parses {@code body} into the tree; throws {@link Refusal} (400 or 422). */
    static Object parse(byte[] body) {
        try (JsonParser p = FACTORY.createParser(body)) {
            JsonToken t = p.nextToken();
            if (t == null) throw Refusal.badRequest("invalid_json", "empty body: expected a JSON value");
            Object root = value(p, t, 0);
            JsonToken after;
            try {
                after = p.nextToken();
            } catch (JsonParseException e) {
                throw fromJackson(e);
            }
            if (after != null) throw Refusal.badRequest("invalid_json", "trailing content after the JSON value");
            return root;
        } catch (JsonParseException e) {
            throw fromJackson(e);
        } catch (IOException e) {
            throw Refusal.badRequest("invalid_json", e.getMessage());
        }
    }

    private static Refusal fromJackson(JsonParseException e) {
        String m = e.getOriginalMessage();
        if (m != null && m.startsWith("Duplicate field")) return Refusal.badRequest("duplicate_key", m);
        if (m != null && m.contains("UTF-8")) return Refusal.badRequest("invalid_utf8", m);
        var loc = e.getLocation();
        String where = loc == null ? "" : " at line " + loc.getLineNr() + ", column " + loc.getColumnNr();
        return Refusal.badRequest("invalid_json", "invalid JSON" + where + ": " + m);
    }

    private static Object value(JsonParser p, JsonToken t, int depth) throws IOException {
        switch (t) {
            case START_OBJECT: {
                if (depth + 1 > MAX_DEPTH) throw Refusal.badRequest("too_deep", "nesting is deeper than the limit of " + MAX_DEPTH);
                TreeMap<String, Object> obj = new TreeMap<>();
                for (JsonToken n = p.nextToken(); n != JsonToken.END_OBJECT; n = p.nextToken()) {
                    String name = p.currentName();
                    checkSurrogates(name);
                    obj.put(name, value(p, p.nextToken(), depth + 1));
                }
                return obj;
            }
            case START_ARRAY: {
                if (depth + 1 > MAX_DEPTH) throw Refusal.badRequest("too_deep", "nesting is deeper than the limit of " + MAX_DEPTH);
                List<Object> arr = new ArrayList<>();
                for (JsonToken n = p.nextToken(); n != JsonToken.END_ARRAY; n = p.nextToken()) {
                    arr.add(value(p, n, depth + 1));
                }
                return arr;
            }
            case VALUE_STRING: {
                String s = p.getText();
                checkSurrogates(s);
                return trim(s);
            }
            case VALUE_NUMBER_INT:
            case VALUE_NUMBER_FLOAT:
                return number(p.getText());
            case VALUE_TRUE:
                return Boolean.TRUE;
            case VALUE_FALSE:
                return Boolean.FALSE;
            case VALUE_NULL:
                return NULL;
            default:
                throw Refusal.badRequest("invalid_json", "unexpected token " + t);
        }
    }

    private static void checkSurrogates(String s) {
        for (int i = 0, n = s.length(); i < n; i++) {
            char c = s.charAt(i);
            if (Character.isSurrogate(c)) {
                if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                    i++;
                } else {
                    throw Refusal.badRequest("invalid_utf8", "lone UTF-16 surrogate in a string");
                }
            }
        }
    }

    /** Rust's {@code char::is_whitespace}: the Unicode White_Space property. */
    static boolean isWhiteSpace(int c) {
        if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
        if (c < 0x85) return false;
        return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A)
                || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
    }

    static String trim(String s) {
        int start = 0;
        int end = s.length();
        while (start < end && isWhiteSpace(s.charAt(start))) start++;
        while (end > start && isWhiteSpace(s.charAt(end - 1))) end--;
        return start == 0 && end == s.length() ? s : s.substring(start, end);
    }

    // ------------------------------------------------------------------ numbers

    /**
     * A number literal (already valid JSON grammar: Jackson checked it) → its double and
     * canonical text, under normd's {@code safe} policy.
     */
    static Num number(String text) {
        int len = text.length();
        // Fast path: integers within ±2^53 print as they are (less a "-0" sign).
        if (len <= 16) {
            boolean plain = true;
            for (int i = text.charAt(0) == '-' ? 1 : 0; i < len; i++) {
                char c = text.charAt(i);
                if (c < '0' || c > '9') {
                    plain = false;
                    break;
                }
            }
            if (plain) {
                long v = Long.parseLong(text);
                if (Math.abs(v) <= (1L << 53)) return new Num(v, v == 0 ? "0" : Long.toString(v));
            }
        }
        double d = Double.parseDouble(text);
        Decimal in = Decimal.of(text);
        if (Double.isInfinite(d) || in.exponentOverflow && !in.zero()) {
            throw Refusal.unprocessable("number_precision",
                    "number " + text + " cannot be canonicalized without changing its value (it is outside the range of an IEEE 754 double)");
        }
        if (d == 0.0) {
            if (!in.zero()) {
                throw Refusal.unprocessable("number_precision", "number " + text
                        + " cannot be canonicalized without changing its value (it is too small for an IEEE 754 double: RFC 8785 would write it as 0)");
            }
            return new Num(0.0, "0");
        }
        Decimal shortest;
        if (in.digits.length() <= 15) {
            // A decimal of at most 15 significant digits survives the trip through a double
            // (DBL_DIG), and no shorter decimal reads as the same double: it is the shortest.
            shortest = in;
        } else {
            shortest = Decimal.of(DoubleToDecimal.toString(d));
            // safe: an integer above 2^53 must keep its value.
            if (Math.abs(d) >= MAX_SAFE && in.isInteger() && !in.sameValue(shortest)) {
                throw Refusal.unprocessable("number_precision", "number " + text
                        + " cannot be canonicalized without changing its value (RFC 8785 would write it as " + shortest.ecma() + ")");
            }
        }
        return new Num(d, shortest.ecma());
    }

    /** A decimal literal as sign, significant digits (no leading/trailing zeros) and exponent. */
    static final class Decimal {
        boolean negative;
        /** Significant digits, no leading or trailing zeros; empty for zero. */
        String digits;
        /** value = 0.digits × 10^point. */
        long point;
        boolean exponentOverflow;

        boolean zero() {
            return digits.isEmpty();
        }

        boolean isInteger() {
            return point >= digits.length();
        }

        boolean sameValue(Decimal o) {
            return negative == o.negative && digits.equals(o.digits) && point == o.point;
        }

        /** Parses JSON number text or Java's Double.toString form ("1.0E-5"). */
        static Decimal of(String text) {
            Decimal d = new Decimal();
            int i = 0;
            int n = text.length();
            if (text.charAt(0) == '-') {
                d.negative = true;
                i = 1;
            }
            StringBuilder digits = new StringBuilder(n);
            long fracDigits = 0;
            boolean inFrac = false;
            long exp = 0;
            for (; i < n; i++) {
                char c = text.charAt(i);
                if (c == '.') {
                    inFrac = true;
                } else if (c == 'e' || c == 'E') {
                    i++;
                    boolean neg = false;
                    if (i < n && (text.charAt(i) == '+' || text.charAt(i) == '-')) {
                        neg = text.charAt(i) == '-';
                        i++;
                    }
                    for (; i < n; i++) {
                        exp = exp * 10 + (text.charAt(i) - '0');
                        if (exp > 1_000_000_000L) {
                            d.exponentOverflow = !neg;
                            exp = 1_000_000_000L;
                        }
                    }
                    if (neg) exp = -exp;
                    break;
                } else {
                    digits.append(c);
                    if (inFrac) fracDigits++;
                }
            }
            int lead = 0;
            while (lead < digits.length() && digits.charAt(lead) == '0') lead++;
            int trail = digits.length();
            while (trail > lead && digits.charAt(trail - 1) == '0') trail--;
            d.digits = digits.substring(lead, trail);
            // value = int(all digits) × 10^(exp − fracDigits); int(all digits) = 0.sig × 10^(len − lead)
            d.point = exp - fracDigits + (digits.length() - lead);
            if (d.digits.isEmpty()) {
                d.point = 0;
                d.negative = false;
            }
            return d;
        }

        /** ECMAScript Number::toString for this (finite, exactly representable) decimal. */
        String ecma() {
            if (digits.isEmpty()) return "0";
            StringBuilder b = new StringBuilder(digits.length() + 8);
            if (negative) b.append('-');
            int k = digits.length();
            long n = point;
            if (k <= n && n <= 21) {
                b.append(digits);
                for (long z = n - k; z > 0; z--) b.append('0');
            } else if (0 < n && n <= 21) {
                b.append(digits, 0, (int) n).append('.').append(digits, (int) n, k);
            } else if (-6 < n && n <= 0) {
                b.append("0.");
                for (long z = -n; z > 0; z--) b.append('0');
                b.append(digits);
            } else {
                long e = n - 1;
                b.append(digits.charAt(0));
                if (k > 1) b.append('.').append(digits, 1, k);
                b.append('e').append(e >= 0 ? '+' : '-').append(Math.abs(e));
            }
            return b.toString();
        }
    }

    // ------------------------------------------------------------------ write

    /** RFC 8785 serialization of a tree made by {@link #parse}. */
    static byte[] write(Object root) {
        Bytes out = new Bytes(4096);
        write(root, out);
        return out.toArray();
    }

    @SuppressWarnings("unchecked")
    private static void write(Object v, Bytes out) {
        if (v instanceof Map<?, ?> m) {
            out.put('{');
            boolean first = true;
            for (Map.Entry<String, Object> e : ((Map<String, Object>) m).entrySet()) {
                if (!first) out.put(',');
                first = false;
                string(e.getKey(), out);
                out.put(':');
                write(e.getValue(), out);
            }
            out.put('}');
        } else if (v instanceof List<?> l) {
            out.put('[');
            for (int i = 0, n = l.size(); i < n; i++) {
                if (i > 0) out.put(',');
                write(l.get(i), out);
            }
            out.put(']');
        } else if (v instanceof String s) {
            string(s, out);
        } else if (v instanceof Num num) {
            out.ascii(num.canonical);
        } else if (v instanceof Boolean b) {
            out.ascii(b ? "true" : "false");
        } else {
            out.ascii("null");
        }
    }

    private static final byte[] HEX = "0123456789abcdef".getBytes(java.nio.charset.StandardCharsets.US_ASCII);

    /** RFC 8785 string: only '"', '\\' and controls escaped (short forms where JSON has them). */
    private static void string(String s, Bytes out) {
        out.put('"');
        for (int i = 0, n = s.length(); i < n; i++) {
            char c = s.charAt(i);
            if (c < 0x80) {
                if (c >= 0x20 && c != '"' && c != '\\') {
                    out.put(c);
                    continue;
                }
                out.put('\\');
                switch (c) {
                    case '"' -> out.put('"');
                    case '\\' -> out.put('\\');
                    case '\b' -> out.put('b');
                    case '\t' -> out.put('t');
                    case '\n' -> out.put('n');
                    case '\f' -> out.put('f');
                    case '\r' -> out.put('r');
                    default -> {
                        out.put('u');
                        out.put('0');
                        out.put('0');
                        out.put(HEX[c >> 4]);
                        out.put(HEX[c & 0xF]);
                    }
                }
            } else if (c < 0x800) {
                out.put(0xC0 | (c >> 6));
                out.put(0x80 | (c & 0x3F));
            } else if (Character.isHighSurrogate(c)) {
                int cp = Character.toCodePoint(c, s.charAt(++i)); // pairs checked at parse
                out.put(0xF0 | (cp >> 18));
                out.put(0x80 | ((cp >> 12) & 0x3F));
                out.put(0x80 | ((cp >> 6) & 0x3F));
                out.put(0x80 | (cp & 0x3F));
            } else {
                out.put(0xE0 | (c >> 12));
                out.put(0x80 | ((c >> 6) & 0x3F));
                out.put(0x80 | (c & 0x3F));
            }
        }
        out.put('"');
    }

    /** A growable byte buffer (ByteArrayOutputStream without the locks). */
    static final class Bytes {
        byte[] buf;
        int len;

        Bytes(int cap) {
            buf = new byte[cap];
        }

        void put(int b) {
            if (len == buf.length) buf = java.util.Arrays.copyOf(buf, buf.length * 2);
            buf[len++] = (byte) b;
        }

        void ascii(String s) {
            for (int i = 0, n = s.length(); i < n; i++) put(s.charAt(i));
        }

        byte[] toArray() {
            return java.util.Arrays.copyOf(buf, len);
        }
    }
}

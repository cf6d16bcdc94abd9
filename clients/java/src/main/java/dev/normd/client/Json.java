package dev.normd.client;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small, strict JSON reader (RFC 8259): the JDK has none, and the client must read
 * {@code GET /flags} and problem bodies without pulling a dependency into the app.
 *
 * <p>Values map to {@code Map<String,Object>} (insertion-ordered, unmodifiable),
 * {@code List<Object>}, {@code String}, {@code Long} (an integer that fits) or
 * {@code Double} (any other number), {@code Boolean} and {@code null}. Strict means:
 * one value and nothing after it but whitespace, no duplicate member names, no
 * unescaped control characters, no lone surrogates, no non-finite numbers, valid UTF-8,
 * nesting at most {@value #MAX_DEPTH} deep (the reader recurses). Reading never
 * evaluates or allocates anything in proportion to a number's size beyond its text.
 */
public final class Json {
    /** Deep enough for any document normd serves; bounded so no input overflows the stack. */
    public static final int MAX_DEPTH = 256;

    private final String s;
    private int i;
    private int depth;

    private Json(String s) {
        this.s = s;
    }

    /** A document that is not strict JSON; the message names the offset. */
    public static final class ParseException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        ParseException(String message) {
            super(message);
        }
    }

    /** Parses UTF-8 bytes (invalid UTF-8 is refused, not replaced). */
    public static Object parse(byte[] utf8) {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(utf8))
                    .toString();
        } catch (CharacterCodingException e) {
            throw new ParseException("invalid UTF-8");
        }
        return parse(text);
    }

    public static Object parse(String text) {
        Json p = new Json(text);
        p.ws();
        Object v = p.value();
        p.ws();
        if (p.i != text.length()) throw p.error("unexpected text after the value");
        return v;
    }

    private Object value() {
        if (i >= s.length()) throw error("unexpected end of input");
        char c = s.charAt(i);
        switch (c) {
            case '{': return object();
            case '[': return array();
            case '"': return string();
            case 't': return literal("true", Boolean.TRUE);
            case 'f': return literal("false", Boolean.FALSE);
            case 'n': return literal("null", null);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return number();
                throw error("unexpected character '" + c + "'");
        }
    }

    private Map<String, Object> object() {
        enter();
        i++; // '{'
        Map<String, Object> m = new LinkedHashMap<>();
        ws();
        if (peek() == '}') {
            i++;
            depth--;
            return Collections.unmodifiableMap(m);
        }
        while (true) {
            ws();
            if (peek() != '"') throw error("expected a member name");
            int at = i;
            String name = string();
            ws();
            expect(':');
            ws();
            Object v = value();
            if (m.containsKey(name)) {
                i = at;
                throw error("duplicate member name \"" + name + "\"");
            }
            m.put(name, v);
            ws();
            char c = peek();
            i++;
            if (c == '}') break;
            if (c != ',') { i--; throw error("expected ',' or '}'"); }
        }
        depth--;
        return Collections.unmodifiableMap(m);
    }

    private List<Object> array() {
        enter();
        i++; // '['
        List<Object> l = new ArrayList<>();
        ws();
        if (peek() == ']') {
            i++;
            depth--;
            return Collections.unmodifiableList(l);
        }
        while (true) {
            ws();
            l.add(value());
            ws();
            char c = peek();
            i++;
            if (c == ']') break;
            if (c != ',') { i--; throw error("expected ',' or ']'"); }
        }
        depth--;
        return Collections.unmodifiableList(l);
    }

    private String string() {
        i++; // opening quote
        StringBuilder b = null;
        int run = i;
        while (true) {
            if (i >= s.length()) throw error("unterminated string");
            char c = s.charAt(i);
            if (c == '"') {
                String out = b == null ? s.substring(run, i) : b.append(s, run, i).toString();
                i++;
                return out;
            }
            if (c < 0x20) throw error("unescaped control character in a string");
            if (Character.isSurrogate(c)) {
                // A raw surrogate can only come from a String argument, never from decoded UTF-8.
                if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                    i += 2;
                    continue;
                }
                throw error("lone surrogate in a string");
            }
            if (c != '\\') {
                i++;
                continue;
            }
            if (b == null) b = new StringBuilder();
            b.append(s, run, i);
            i++;
            if (i >= s.length()) throw error("unterminated escape");
            char e = s.charAt(i++);
            switch (e) {
                case '"': b.append('"'); break;
                case '\\': b.append('\\'); break;
                case '/': b.append('/'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u': {
                    char u = hex4();
                    if (Character.isHighSurrogate(u)) {
                        if (i + 6 <= s.length() && s.charAt(i) == '\\' && s.charAt(i + 1) == 'u') {
                            i += 2;
                            char low = hex4();
                            if (!Character.isLowSurrogate(low)) throw error("lone surrogate escape");
                            b.append(u).append(low);
                        } else {
                            throw error("lone surrogate escape");
                        }
                    } else if (Character.isLowSurrogate(u)) {
                        throw error("lone surrogate escape");
                    } else {
                        b.append(u);
                    }
                    break;
                }
                default:
                    i--;
                    throw error("invalid escape '\\" + e + "'");
            }
            run = i;
        }
    }

    private char hex4() {
        if (i + 4 > s.length()) throw error("truncated \\u escape");
        int v = 0;
        for (int k = 0; k < 4; k++) {
            int d = Character.digit(s.charAt(i + k), 16);
            if (d < 0) throw error("invalid \\u escape");
            v = v * 16 + d;
        }
        i += 4;
        return (char) v;
    }

    private Object number() {
        int start = i;
        boolean integral = true;
        if (s.charAt(i) == '-') i++;
        if (i < s.length() && s.charAt(i) == '0') {
            i++;
        } else if (!digits()) {
            throw error("invalid number");
        }
        if (i < s.length() && s.charAt(i) == '.') {
            integral = false;
            i++;
            if (!digits()) throw error("invalid number: no digit after '.'");
        }
        if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
            integral = false;
            i++;
            if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) i++;
            if (!digits()) throw error("invalid number: no digit in the exponent");
        }
        String text = s.substring(start, i);
        if (integral && text.length() <= 20) { // "-9223372036854775808" is 20 characters
            try {
                return Long.parseLong(text);
            } catch (NumberFormatException tooBig) {
                // falls through to a double
            }
        }
        double d = Double.parseDouble(text);
        if (Double.isInfinite(d)) {
            i = start;
            throw error("number out of range");
        }
        return d;
    }

    private boolean digits() {
        int start = i;
        while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') i++;
        return i > start;
    }

    private Object literal(String word, Object v) {
        if (!s.startsWith(word, i)) throw error("invalid literal");
        i += word.length();
        return v;
    }

    private void enter() {
        if (++depth > MAX_DEPTH) throw error("nesting deeper than " + MAX_DEPTH);
    }

    private void ws() {
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
            i++;
        }
    }

    private char peek() {
        if (i >= s.length()) throw error("unexpected end of input");
        return s.charAt(i);
    }

    private void expect(char c) {
        if (peek() != c) throw error("expected '" + c + "'");
        i++;
    }

    private ParseException error(String what) {
        return new ParseException("JSON: " + what + " at offset " + i);
    }
}

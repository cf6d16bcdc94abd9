package dev.normd.demo;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The order document (order.v1) bound to typed classes, with the checks order.v1 states.
 *
 * <p>There is no JSON Schema validator for Java in reach here (Maven Central is not), so
 * this is what a Java team without one writes: records for the document, a binder from
 * the parsed tree that checks types, required members, {@code additionalProperties: false},
 * enums, patterns, lengths (in code points), ranges, {@code minItems}/{@code maxItems} and
 * {@code uniqueItems}, and collects findings as {@code {instance_path, message}} (JSON
 * pointers, the instance path normd reports too). It mirrors
 * {@code shared/bench/schemas/order.v1.json} rule by rule; it is not a general validator,
 * and a change to the schema needs a change here (the price of not having one).
 */
record Order(String schemaVersion, String eventId, String eventType, String occurredAt, Body order, Metadata metadata) {

    record Body(String id, String status, String currency, String channel, String createdAt, Customer customer,
            Address shippingAddress, List<LineItem> items, Totals totals, Payment payment) {}

    record Customer(String id, String name, String email, String phone, Boolean vip, String loyaltyTier,
            Boolean marketingOptIn) {}

    record Address(String line1, String line2, String city, String postalCode, String country, Geo geo) {}

    record Geo(double lat, double lon) {}

    record LineItem(long line, String sku, String name, long qty, double price, Double discount, Double taxRate,
            List<String> tags, Boolean gift, Attrs attrs) {}

    record Attrs(String color, String size) {}

    record Totals(double subtotal, double tax, double shipping, double grandTotal, long itemCount) {}

    record Payment(String method, boolean captured, String cardLast4, Double amount) {}

    record Metadata(Source source, Trace trace, Map<String, String> labels, Long retries, String notes) {}

    record Source(String service, String version, String region) {}

    record Trace(String traceId, String spanId, Boolean sampled) {}

    static final int MAX_ERRORS = 20;

    /** Binds and checks; throws a 422 {@code schema_violation} {@link Refusal} listing the findings. */
    static Order bind(Object root) {
        Binder b = new Binder();
        Order o = b.order(root);
        if (!b.errors.isEmpty()) {
            throw new Refusal(422, "schema_violation", "the order does not match order.v1",
                    b.errors.size() > MAX_ERRORS ? b.errors.subList(0, MAX_ERRORS) : b.errors);
        }
        return o;
    }

    /** Tree → records; every check that fails adds a finding and binds a null/0 instead. */
    private static final class Binder {
        static final Pattern UUID4 = Pattern.compile("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
        static final Pattern TIMESTAMP = Pattern.compile("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z$");
        static final Pattern ORDER_ID = Pattern.compile("^ORD-[0-9]{10}$");
        static final Pattern CURRENCY = Pattern.compile("^[A-Z]{3}$");
        static final Pattern CUSTOMER_ID = Pattern.compile("^CUS-[0-9]{8}$");
        static final Pattern POSTAL = Pattern.compile("^[0-9A-Za-z -]{3,10}$");
        static final Pattern COUNTRY = Pattern.compile("^[A-Z]{2}$");
        static final Pattern SKU = Pattern.compile("^[A-Z]{3}-[0-9]{4,6}$");
        static final Pattern TAG = Pattern.compile("^[a-z_]+$");
        static final Pattern LAST4 = Pattern.compile("^[0-9]{4}$");
        static final Pattern SEMVER = Pattern.compile("^[0-9]+\\.[0-9]+\\.[0-9]+$");
        static final Pattern HEX32 = Pattern.compile("^[0-9a-f]{32}$");
        static final Pattern HEX16 = Pattern.compile("^[0-9a-f]{16}$");

        static final Set<String> EVENT_TYPES = Set.of("order.created", "order.updated", "order.paid", "order.shipped", "order.cancelled");
        static final Set<String> STATUSES = Set.of("pending", "paid", "fulfilled", "shipped", "delivered", "cancelled", "refunded");
        static final Set<String> CHANNELS = Set.of("web", "ios", "android", "pos", "marketplace");
        static final Set<String> TIERS = Set.of("bronze", "silver", "gold", "platinum"); // or null
        static final Set<String> METHODS = Set.of("card", "paypal", "sepa_debit", "klarna", "gift_card", "cash");
        static final Set<String> SIZES = Set.of("XS", "S", "M", "L", "XL"); // or null

        static final Set<String> ROOT_KEYS = Set.of("schema_version", "event_id", "event_type", "occurred_at", "order", "metadata");
        static final Set<String> CUSTOMER_KEYS = Set.of("id", "name", "email", "phone", "vip", "loyalty_tier", "marketing_opt_in");
        static final Set<String> ADDRESS_KEYS = Set.of("line1", "line2", "city", "postal_code", "country", "geo");
        static final Set<String> GEO_KEYS = Set.of("lat", "lon");
        static final Set<String> ITEM_KEYS = Set.of("line", "sku", "name", "qty", "price", "discount", "tax_rate", "tags", "gift", "attrs");

        final List<Refusal.Finding> errors = new ArrayList<>();

        void fail(String path, String message) {
            errors.add(new Refusal.Finding(path, message));
        }

        static String at(String parent, String key) {
            return parent + "/" + key.replace("~", "~0").replace("/", "~1");
        }

        // ---- shapes

        @SuppressWarnings("unchecked")
        Map<String, Object> object(Object v, String path) {
            if (v instanceof Map<?, ?> m) return (Map<String, Object>) m;
            fail(path, "expected an object");
            return null;
        }

        /** Required members present, and with {@code closed} no others. */
        boolean shape(Map<String, Object> m, String path, Set<String> closed, String... required) {
            boolean ok = true;
            for (String r : required) {
                if (!m.containsKey(r)) {
                    fail(path, "\"" + r + "\" is a required property");
                    ok = false;
                }
            }
            if (closed != null) {
                for (String k : m.keySet()) {
                    if (!closed.contains(k)) {
                        fail(path, "additional property \"" + k + "\" is not allowed");
                        ok = false;
                    }
                }
            }
            return ok;
        }

        // ---- scalars (each returns the bound value, or null after a finding)

        String string(Map<String, Object> m, String key, String path, boolean nullable) {
            if (!m.containsKey(key)) return null;
            Object v = m.get(key);
            if (v == Canonical.NULL && nullable) return null;
            if (v instanceof String s) return s;
            fail(at(path, key), nullable ? "expected a string or null" : "expected a string");
            return null;
        }

        String pattern(Map<String, Object> m, String key, String path, Pattern p, boolean nullable) {
            String s = string(m, key, path, nullable);
            if (s != null && !p.matcher(s).matches()) fail(at(path, key), "\"" + s + "\" does not match " + p.pattern());
            return s;
        }

        String length(Map<String, Object> m, String key, String path, int min, int max, boolean nullable) {
            String s = string(m, key, path, nullable);
            if (s != null) {
                int n = s.codePointCount(0, s.length());
                if (n < min) fail(at(path, key), "shorter than " + min + " characters");
                if (n > max) fail(at(path, key), "longer than " + max + " characters");
            }
            return s;
        }

        String oneOf(Map<String, Object> m, String key, String path, Set<String> allowed, boolean nullAllowed) {
            if (!m.containsKey(key)) return null;
            Object v = m.get(key);
            if (v == Canonical.NULL && nullAllowed) return null;
            if (v instanceof String s && allowed.contains(s)) return s;
            fail(at(path, key), Canonical.write(v).length < 200 ? new String(Canonical.write(v), java.nio.charset.StandardCharsets.UTF_8)
                    + " is not one of the allowed values" : "not one of the allowed values");
            return null;
        }

        Boolean bool(Map<String, Object> m, String key, String path) {
            if (!m.containsKey(key)) return null;
            if (m.get(key) instanceof Boolean b) return b;
            fail(at(path, key), "expected a boolean");
            return null;
        }

        Double number(Map<String, Object> m, String key, String path, double min, double max) {
            if (!m.containsKey(key)) return null;
            if (m.get(key) instanceof Canonical.Num n) {
                if (n.value < min) fail(at(path, key), n.canonical + " is less than the minimum of " + fmt(min));
                else if (n.value > max) fail(at(path, key), n.canonical + " is greater than the maximum of " + fmt(max));
                return n.value;
            }
            fail(at(path, key), "expected a number");
            return null;
        }

        Long integer(Map<String, Object> m, String key, String path, long min, long max) {
            if (!m.containsKey(key)) return null;
            if (m.get(key) instanceof Canonical.Num n && n.integral()) {
                if (n.value < min) fail(at(path, key), n.canonical + " is less than the minimum of " + min);
                else if (n.value > max) fail(at(path, key), n.canonical + " is greater than the maximum of " + max);
                return (long) n.value;
            }
            fail(at(path, key), "expected an integer");
            return null;
        }

        static String fmt(double d) {
            return d == Math.rint(d) ? Long.toString((long) d) : Double.toString(d);
        }

        static double money(Double d) {
            return d == null ? 0 : d;
        }

        // ---- the document

        Order order(Object root) {
            Map<String, Object> m = object(root, "");
            if (m == null) return null;
            shape(m, "", ROOT_KEYS, "schema_version", "event_id", "event_type", "occurred_at", "order", "metadata");
            String version = null;
            if (m.containsKey("schema_version")) {
                if ("order.v1".equals(m.get("schema_version"))) version = "order.v1";
                else fail("/schema_version", "must be \"order.v1\"");
            }
            return new Order(version,
                    pattern(m, "event_id", "", UUID4, false),
                    oneOf(m, "event_type", "", EVENT_TYPES, false),
                    pattern(m, "occurred_at", "", TIMESTAMP, false),
                    m.containsKey("order") ? body(m.get("order"), "/order") : null,
                    m.containsKey("metadata") ? metadata(m.get("metadata"), "/metadata") : null);
        }

        Body body(Object v, String path) {
            Map<String, Object> m = object(v, path);
            if (m == null) return null;
            shape(m, path, null, "id", "status", "currency", "channel", "created_at", "customer", "shipping_address",
                    "items", "totals", "payment");
            return new Body(
                    pattern(m, "id", path, ORDER_ID, false),
                    oneOf(m, "status", path, STATUSES, false),
                    pattern(m, "currency", path, CURRENCY, false),
                    oneOf(m, "channel", path, CHANNELS, false),
                    pattern(m, "created_at", path, TIMESTAMP, false),
                    m.containsKey("customer") ? customer(m.get("customer"), path + "/customer") : null,
                    m.containsKey("shipping_address") ? address(m.get("shipping_address"), path + "/shipping_address") : null,
                    m.containsKey("items") ? items(m.get("items"), path + "/items") : null,
                    m.containsKey("totals") ? totals(m.get("totals"), path + "/totals") : null,
                    m.containsKey("payment") ? payment(m.get("payment"), path + "/payment") : null);
        }

        Customer customer(Object v, String path) {
            Map<String, Object> m = object(v, path);
            if (m == null) return null;
            shape(m, path, CUSTOMER_KEYS, "id", "name", "email");
            return new Customer(
                    pattern(m, "id", path, CUSTOMER_ID, false),
                    length(m, "name", path, 1, 200, false),
                    length(m, "email", path, 3, 254, false),
                    length(m, "phone", path, 0, 32, true),
                    bool(m, "vip", path),
                    oneOf(m, "loyalty_tier", path, TIERS, true),
                    bool(m, "marketing_opt_in", path));
        }

        Address address(Object v, String path) {
            Map<String, Object> m = object(v, path);
            if (m == null) return null;
            shape(m, path, ADDRESS_KEYS, "line1", "city", "postal_code", "country");
            Geo geo = null;
            if (m.containsKey("geo")) {
                Map<String, Object> g = object(m.get("geo"), path + "/geo");
                if (g != null) {
                    shape(g, path + "/geo", GEO_KEYS, "lat", "lon");
                    Double lat = number(g, "lat", path + "/geo", -90, 90);
                    Double lon = number(g, "lon", path + "/geo", -180, 180);
                    geo = new Geo(money(lat), money(lon));
                }
            }
            return new Address(
                    length(m, "line1", path, 1, Integer.MAX_VALUE, false),
                    string(m, "line2", path, true),
                    length(m, "city", path, 1, Integer.MAX_VALUE, false),
                    pattern(m, "postal_code", path, POSTAL, false),
                    pattern(m, "country", path, COUNTRY, false),
                    geo);
        }

        List<LineItem> items(Object v, String path) {
            if (!(v instanceof List<?> l)) {
                fail(path, "expected an array");
                return null;
            }
            if (l.isEmpty()) fail(path, "[] has fewer than 1 item");
            if (l.size() > 1000) fail(path, "has more than 1000 items");
            List<LineItem> out = new ArrayList<>(l.size());
            for (int i = 0; i < l.size(); i++) out.add(item(l.get(i), path + "/" + i));
            return out;
        }

        LineItem item(Object v, String path) {
            Map<String, Object> m = object(v, path);
            if (m == null) return null;
            shape(m, path, ITEM_KEYS, "line", "sku", "name", "qty", "price");
            Long line = integer(m, "line", path, 1, Long.MAX_VALUE);
            String sku = pattern(m, "sku", path, SKU, false);
            String name = length(m, "name", path, 1, 200, false);
            Long qty = integer(m, "qty", path, 1, 10000);
            Double price = number(m, "price", path, 0, Double.POSITIVE_INFINITY);
            Double discount = number(m, "discount", path, 0, Double.POSITIVE_INFINITY);
            Double taxRate = number(m, "tax_rate", path, 0, 1);
            List<String> tags = null;
            if (m.containsKey("tags")) {
                String tp = path + "/tags";
                if (m.get("tags") instanceof List<?> tl) {
                    if (tl.size() > 10) fail(tp, "has more than 10 items");
                    tags = new ArrayList<>(tl.size());
                    Set<String> seen = new HashSet<>();
                    boolean unique = true;
                    for (int i = 0; i < tl.size(); i++) {
                        Object t = tl.get(i);
                        if (t instanceof String s) {
                            if (!TAG.matcher(s).matches()) fail(tp + "/" + i, "\"" + s + "\" does not match " + TAG.pattern());
                            unique &= seen.add(s);
                            tags.add(s);
                        } else {
                            fail(tp + "/" + i, "expected a string");
                            unique &= seen.add(new String(Canonical.write(t), java.nio.charset.StandardCharsets.UTF_8) + "\u0000");
                        }
                    }
                    if (!unique) fail(tp, "has non-unique elements");
                } else {
                    fail(tp, "expected an array");
                }
            }
            Boolean gift = bool(m, "gift", path);
            Attrs attrs = null;
            if (m.containsKey("attrs")) {
                Map<String, Object> a = object(m.get("attrs"), path + "/attrs");
                if (a != null) attrs = new Attrs(string(a, "color", path + "/attrs", true), oneOf(a, "size", path + "/attrs", SIZES, true));
            }
            return new LineItem(line == null ? 0 : line, sku, name, qty == null ? 0 : qty, money(price), discount, taxRate,
                    tags, gift, attrs);
        }

        Totals totals(Object v, String path) {
            Map<String, Object> m = object(v, path);
            if (m == null) return null;
            shape(m, path, null, "subtotal", "tax", "shipping", "grand_total", "item_count");
            double inf = Double.POSITIVE_INFINITY;
            Long count = integer(m, "item_count", path, 1, Long.MAX_VALUE);
            return new Totals(money(number(m, "subtotal", path, 0, inf)), money(number(m, "tax", path, 0, inf)),
                    money(number(m, "shipping", path, 0, inf)), money(number(m, "grand_total", path, 0, inf)),
                    count == null ? 0 : count);
        }

        Payment payment(Object v, String path) {
            Map<String, Object> m = object(v, path);
            if (m == null) return null;
            shape(m, path, null, "method", "captured");
            Boolean captured = bool(m, "captured", path);
            return new Payment(oneOf(m, "method", path, METHODS, false), captured != null && captured,
                    pattern(m, "card_last4", path, LAST4, true), number(m, "amount", path, 0, Double.POSITIVE_INFINITY));
        }

        Metadata metadata(Object v, String path) {
            Map<String, Object> m = object(v, path);
            if (m == null) return null;
            shape(m, path, null, "source", "trace");
            Source source = null;
            if (m.containsKey("source")) {
                String sp = path + "/source";
                Map<String, Object> s = object(m.get("source"), sp);
                if (s != null) {
                    shape(s, sp, null, "service", "version");
                    source = new Source(length(s, "service", sp, 1, Integer.MAX_VALUE, false),
                            pattern(s, "version", sp, SEMVER, false), string(s, "region", sp, false));
                }
            }
            Trace trace = null;
            if (m.containsKey("trace")) {
                String tp = path + "/trace";
                Map<String, Object> t = object(m.get("trace"), tp);
                if (t != null) {
                    shape(t, tp, null, "trace_id", "span_id");
                    trace = new Trace(pattern(t, "trace_id", tp, HEX32, false), pattern(t, "span_id", tp, HEX16, false),
                            bool(t, "sampled", tp));
                }
            }
            Map<String, String> labels = null;
            if (m.containsKey("labels")) {
                String lp = path + "/labels";
                Map<String, Object> l = object(m.get("labels"), lp);
                if (l != null) {
                    labels = new LinkedHashMap<>();
                    for (String k : l.keySet()) labels.put(k, string(l, k, lp, true));
                }
            }
            return new Metadata(source, trace, labels, integer(m, "retries", path, 0, 10),
                    length(m, "notes", path, 0, 500, true));
        }
    }
}

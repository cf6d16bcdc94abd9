package dev.normd.demo;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.zip.CRC32;
import java.util.zip.Deflater;

/**
 * The in-app path: the job normd's {@code bench} profile does, on this JVM's heap —
 * parse (Jackson streaming), trim strings, RFC 8785 canonical bytes, bind to {@link Order}
 * and check it, gzip at level 1, SHA-256 of the canonical bytes (the app answers with the
 * digest, normd sends it as {@code X-Normd-Digest}).
 */
final class InAppNorm {
    /** What either path produced: the stored (gzip) bytes, the digest and size of the canonical form. */
    record Output(byte[] gzip, String digest, long canonicalBytes) {}

    private static final byte[] GZIP_HEADER = {0x1f, (byte) 0x8b, 8, 0, 0, 0, 0, 0, 4, (byte) 0xff};

    /** A zlib deflate state is ~256 KiB of native memory: one per worker thread, reused. */
    private static final ThreadLocal<Deflater> DEFLATER = ThreadLocal.withInitial(() -> new Deflater(1, true));
    private static final ThreadLocal<MessageDigest> SHA256 = ThreadLocal.withInitial(() -> {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    });

    private InAppNorm() {}

    static Output apply(byte[] body) {
        Object tree = Canonical.parse(body);
        Order.bind(tree);
        byte[] canonical = Canonical.write(tree);
        return new Output(gzip(canonical), digest(canonical), canonical.length);
    }

    static String digest(byte[] canonical) {
        MessageDigest md = SHA256.get();
        md.reset();
        return "sha-256=:" + Base64.getEncoder().encodeToString(md.digest(canonical)) + ":";
    }

    /** gzip (RFC 1952) at level 1, no name, mtime 0. */
    static byte[] gzip(byte[] data) {
        Deflater d = DEFLATER.get();
        d.reset();
        d.setInput(data);
        d.finish();
        byte[] out = new byte[GZIP_HEADER.length + data.length / 2 + 64];
        System.arraycopy(GZIP_HEADER, 0, out, 0, GZIP_HEADER.length);
        int len = GZIP_HEADER.length;
        while (!d.finished()) {
            if (len == out.length) out = java.util.Arrays.copyOf(out, out.length * 2);
            len += d.deflate(out, len, out.length - len);
        }
        CRC32 crc = new CRC32();
        crc.update(data);
        if (out.length < len + 8) out = java.util.Arrays.copyOf(out, len + 8);
        long c = crc.getValue();
        int n = data.length;
        for (int i = 0; i < 4; i++) out[len++] = (byte) (c >>> (8 * i));
        for (int i = 0; i < 4; i++) out[len++] = (byte) (n >>> (8 * i));
        return out.length == len ? out : java.util.Arrays.copyOf(out, len);
    }
}

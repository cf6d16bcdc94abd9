package dev.normd.client;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * normd's TCP listener on 127.0.0.1 through {@link HttpClient} (HTTP/1.1, which keeps its
 * own keep-alive pool). Used alone, or when the Unix socket cannot be connected.
 */
final class TcpTransport implements Transport {
    private final HttpClient http;
    private final String base;
    private final long maxResponseBytes;
    /** Exchanges out now, so close() can end them (JDK 17's HttpClient cannot be closed). */
    private final Set<CompletableFuture<?>> inFlight = ConcurrentHashMap.newKeySet();
    private volatile boolean closed;

    TcpTransport(int port, long maxResponseBytes) {
        this.http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .followRedirects(HttpClient.Redirect.NEVER)
                .proxy(HttpClient.Builder.NO_PROXY) // loopback only, whatever the JVM's proxy settings
                .build();
        this.base = "http://127.0.0.1:" + port;
        this.maxResponseBytes = maxResponseBytes;
    }

    @Override
    public String name() {
        return "tcp";
    }

    @Override
    public Reply exchange(Request request, long deadlineNanos) throws IOException {
        if (closed) throw new ClosedChannelException();
        long left = deadlineNanos - System.nanoTime();
        if (left <= 0) throw new Failure.DeadlinePassed();
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + request.target()))
                .timeout(Duration.ofNanos(left))
                .method(request.method(), request.body() == null
                        ? HttpRequest.BodyPublishers.noBody()
                        : HttpRequest.BodyPublishers.ofByteArray(request.body()));
        String[] h = request.headers();
        for (int i = 0; i + 1 < h.length; i += 2) b.header(h[i], h[i + 1]);

        // The request timeout stops at the answer's headers; the future bounds the body too.
        CompletableFuture<HttpResponse<byte[]>> f = http.sendAsync(b.build(), info -> new CappedBody(info, maxResponseBytes));
        HttpResponse<byte[]> res;
        inFlight.add(f);
        try {
            if (closed) f.cancel(true); // close() may have run before the add
            res = f.get(Math.max(0, deadlineNanos - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (CancellationException e) {
            throw new ClosedChannelException(); // close(): the client is going away
        } catch (TimeoutException e) {
            f.cancel(true); // aborts the exchange: normd sees the connection close
            throw new Failure.DeadlinePassed();
        } catch (InterruptedException e) {
            f.cancel(true);
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted while waiting for normd");
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof HttpConnectTimeoutException) throw new Failure.DeadlinePassed();
            if (cause instanceof HttpTimeoutException) throw new Failure.DeadlinePassed();
            if (cause instanceof ConnectException ce) throw new Failure.ConnectFailed(ce);
            if (cause instanceof IOException io) throw io;
            throw new IOException(cause);
        } finally {
            inFlight.remove(f);
        }
        Map<String, String> headers = new HashMap<>();
        res.headers().map().forEach((k, v) -> headers.put(k.toLowerCase(Locale.ROOT), String.join(", ", v)));
        return new Reply(res.statusCode(), headers, res.body(), "tcp");
    }

    /**
     * Ends the exchanges still out (their callers fall back as connection). JDK 17's
     * HttpClient has no close(): its daemon threads and idle connections go with the last
     * reference to it.
     */
    @Override
    public void close() {
        closed = true;
        for (CompletableFuture<?> f : inFlight) f.cancel(true);
    }

    /** Collects the body, failing once it is larger than the cap (by Content-Length, or by count). */
    private static final class CappedBody implements HttpResponse.BodySubscriber<byte[]> {
        private final CompletableFuture<byte[]> result = new CompletableFuture<>();
        private final List<ByteBuffer> parts = new ArrayList<>();
        private final long max;
        private final long declared;
        private long size;
        private Flow.Subscription subscription;

        CappedBody(HttpResponse.ResponseInfo info, long max) {
            this.max = max;
            this.declared = info.headers().firstValueAsLong("content-length").orElse(-1);
        }

        @Override
        public CompletionStage<byte[]> getBody() {
            return result;
        }

        @Override
        public void onSubscribe(Flow.Subscription s) {
            subscription = s;
            if (declared > max) {
                s.cancel();
                result.completeExceptionally(new Failure.TooLarge(max));
            } else {
                s.request(Long.MAX_VALUE);
            }
        }

        @Override
        public void onNext(List<ByteBuffer> items) {
            if (result.isDone()) return;
            for (ByteBuffer b : items) {
                size += b.remaining();
                parts.add(b);
            }
            if (size > max) {
                subscription.cancel();
                result.completeExceptionally(new Failure.TooLarge(max));
            }
        }

        @Override
        public void onError(Throwable t) {
            result.completeExceptionally(t);
        }

        @Override
        public void onComplete() {
            byte[] out = new byte[(int) size];
            int at = 0;
            for (ByteBuffer b : parts) {
                int n = b.remaining();
                b.get(out, at, n);
                at += n;
            }
            result.complete(out);
        }
    }
}

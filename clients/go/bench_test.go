package normd

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// The client's overhead per call: the same 4 KB POST /norm to a real normd
// through the client and through a bare net/http call over the same socket,
// interleaved so both see the same machine. Run with
//
//	NORMD_BIN=… go test -run XXX -bench . -benchtime 2000x
//
// Payloads: NORMD_BENCH_PAYLOADS, else /work/shared/bench/payloads/4k.

func benchPayloads(b *testing.B) [][]byte {
	dir := os.Getenv("NORMD_BENCH_PAYLOADS")
	if dir == "" {
		dir = "/work/shared/bench/payloads/4k"
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		b.Skipf("SKIPPED: no payloads in %s (set NORMD_BENCH_PAYLOADS)", dir)
	}
	var out [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// benchSetup starts normd and returns the payloads, a client and a bare
// http.Client on its socket.
func benchSetup(b *testing.B) ([][]byte, *Client, *http.Client) {
	if normdBin() == "" {
		b.Skip("SKIPPED: set NORMD_BIN to benchmark against a real normd")
	}
	payloads := benchPayloads(b)
	p := startNormd(b, map[string]any{"norm": map[string]any{"enabled": true, "rollout_percent": 100}})
	c, err := New(Options{SocketPath: p.sock, RolloutPercent: Int(100), Deadline: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.sock)
		},
		DisableCompression: true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return payloads, c, &http.Client{Transport: tr}
}

func clientCall(b *testing.B, c *Client, body []byte) {
	r, err := c.Norm(context.Background(), body, CallOptions{})
	if err != nil || r.Path != PathNormd {
		b.Fatalf("client call: %+v, %v", r, err)
	}
}

func bareCall(b *testing.B, hc *http.Client, body []byte) {
	req, _ := http.NewRequest(http.MethodPost, "http://normd/norm", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Deadline-Ms", "1000")
	res, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 {
		b.Fatalf("bare call: %d, %v", res.StatusCode, err)
	}
}

// BenchmarkOverhead reports the median and p99 of both kinds of call and
// the difference of the medians (the client's own cost per call).
func BenchmarkOverhead(b *testing.B) {
	payloads, c, hc := benchSetup(b)
	for i := 0; i < 50; i++ { // warm both connections and normd
		clientCall(b, c, payloads[i%len(payloads)])
		bareCall(b, hc, payloads[i%len(payloads)])
	}
	viaClient := make([]time.Duration, 0, b.N)
	bare := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := payloads[i%len(payloads)]
		// Alternate which goes first, so neither always meets the warmer normd.
		start := time.Now()
		if i%2 == 0 {
			bareCall(b, hc, body)
		} else {
			clientCall(b, c, body)
		}
		mid := time.Now()
		if i%2 == 0 {
			clientCall(b, c, body)
		} else {
			bareCall(b, hc, body)
		}
		first, second := mid.Sub(start), time.Since(mid)
		if i%2 == 0 {
			bare, viaClient = append(bare, first), append(viaClient, second)
		} else {
			viaClient, bare = append(viaClient, first), append(bare, second)
		}
	}
	b.StopTimer()
	cp50, cp99 := quantiles(viaClient)
	bp50, bp99 := quantiles(bare)
	b.ReportMetric(us(cp50), "client-p50-µs")
	b.ReportMetric(us(cp99), "client-p99-µs")
	b.ReportMetric(us(bp50), "bare-p50-µs")
	b.ReportMetric(us(bp99), "bare-p99-µs")
	b.ReportMetric(us(cp50-bp50), "overhead-p50-µs")
	b.ReportMetric(0, "ns/op") // a pair of calls per op: the line above says more
}

// BenchmarkClient and BenchmarkBare give each kind's allocations per call.
func BenchmarkClient(b *testing.B) {
	payloads, c, _ := benchSetup(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clientCall(b, c, payloads[i%len(payloads)])
	}
}

func BenchmarkBare(b *testing.B) {
	payloads, _, hc := benchSetup(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bareCall(b, hc, payloads[i%len(payloads)])
	}
}

func quantiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[(len(s)*99)/100]
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

package normd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// newTestClient builds a client on f's socket with a fixed 100 % rollout,
// an in-app function answering "inapp" and a budget no loaded machine
// misses (tests about the timeout set their own); o's own fields win.
func newTestClient(t *testing.T, f *fake, o Options) *Client {
	t.Helper()
	if o.Deadline == 0 {
		o.Deadline = 10 * time.Second
	}
	if o.SocketPath == "" && o.TCPAddr == "" {
		o.SocketPath = f.sock
	}
	if o.RolloutPercent == nil {
		o.RolloutPercent = Int(100)
	}
	if o.InApp == nil {
		o.InApp = staticInApp("inapp")
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func checkEquation(t *testing.T, c *Client) {
	t.Helper()
	s := c.Stats()
	if s.Calls != s.NormdOK+s.FallbackTotal+s.Errors {
		t.Errorf("calls %d != normd_ok %d + fallback_total %d + errors %d", s.Calls, s.NormdOK, s.FallbackTotal, s.Errors)
	}
}

func TestNormOKReturnsNormdBytesAndSendsBudgetAndSelection(t *testing.T) {
	f := newFake(t, false)
	c := newTestClient(t, f, Options{Profile: "orders", Deadline: 7 * time.Second, Level: Int(0)})
	body := []byte(`{"b":2,"a":[1,"x"]}`)
	r, err := c.Norm(context.Background(), body, CallOptions{Key: strp("order-1"), Schema: "order.v1", RequestID: "req-7",
		Header: http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, "x-deadline-ms": {"999"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":[1,"x"],"b":2}`
	if r.Path != PathNormd || r.Reason != "" || string(gunzip(t, r.Data)) != want {
		t.Fatalf("result %+v, data %q", r, gunzip(t, r.Data))
	}
	if r.Encoding != "gzip" || r.Digest != digestOf([]byte(want)) || r.CanonicalBytes != int64(len(want)) ||
		r.InputBytes != int64(len(body)) || r.OutputBytes != int64(len(r.Data)) || r.RequestID != "req-7" {
		t.Errorf("metadata %+v", r)
	}
	s := f.lastSeen()
	if s.query != "level=0&profile=orders&schema=order.v1" {
		t.Errorf("query %q", s.query)
	}
	if got := s.header.Values("X-Deadline-Ms"); len(got) != 1 || got[0] != "7000" {
		t.Errorf("X-Deadline-Ms %q: the client's own header must win over a passed-through one", got)
	}
	if s.header.Get("Content-Type") != "application/json" || s.header.Get("X-Request-Id") != "req-7" ||
		s.header.Get("Traceparent") == "" || s.header.Get("Accept-Encoding") != "" {
		t.Errorf("headers %v", s.header)
	}
	if !bytes.Equal(s.body, body) {
		t.Errorf("body %q", s.body)
	}
	checkEquation(t, c)
}

func TestKeepAliveSequentialCallsShareOneConnection(t *testing.T) {
	f := newFake(t, false)
	c := newTestClient(t, f, Options{})
	for i := 0; i < 5; i++ {
		if r, err := c.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{}); err != nil || r.Path != PathNormd {
			t.Fatalf("call %d: %+v %v", i, r, err)
		}
	}
	if _, _, conns := f.counts(); conns != 1 {
		t.Errorf("5 sequential calls used %d connections", conns)
	}
	if s := c.Stats(); s.ByTransport.Unix != 5 || s.ByTransport.TCP != 0 {
		t.Errorf("by transport %+v", s.ByTransport)
	}
}

// The fallback table, one row per answer of normd that is not a result.
func TestFallbackTable(t *testing.T) {
	noDigest := func(w http.ResponseWriter, r *http.Request, body []byte) {
		okNorm(&dropHeader{ResponseWriter: w, name: "X-Normd-Digest"}, r, body)
	}
	plain := func(status int) func(http.ResponseWriter, *http.Request, []byte) {
		return func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(status)
			io.WriteString(w, "from a proxy\n")
		}
	}
	for _, row := range []struct {
		name    string
		answer  func(http.ResponseWriter, *http.Request, []byte)
		reason  Reason
		failure bool
	}{
		{"429 overloaded", answer(429, "overloaded"), ReasonOverloaded, true},
		{"503 not_ready", answer(503, "not_ready"), ReasonUnavailable, true},
		{"503 draining", answer(503, "draining"), ReasonUnavailable, true},
		{"503 memory_pressure", answer(503, "memory_pressure"), ReasonUnavailable, true},
		{"503 without a problem", plain(503), ReasonUnavailable, true},
		{"503 disabled", answer(503, "disabled"), ReasonDisabled, false},
		{"504 deadline_exceeded", answer(504, "deadline_exceeded"), ReasonDeadline, true},
		{"500 internal", answer(500, "internal"), ReasonServerError, true},
		{"401 from a proxy", plain(401), ReasonServerError, true},
		{"403 from a proxy", plain(403), ReasonServerError, true},
		{"408", plain(408), ReasonServerError, true},
		{"409", plain(409), ReasonServerError, true},
		{"502 from a proxy", plain(502), ReasonServerError, true},
		{"200 without X-Normd-Digest", noDigest, ReasonServerError, true},
		{"connection closed before any answer", hangUp, ReasonConnection, true},
	} {
		t.Run(row.name, func(t *testing.T) {
			f := newFake(t, false)
			f.setNorm(row.answer)
			c := newTestClient(t, f, Options{})
			r, err := c.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{})
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if r.Path != PathInApp || r.Reason != row.reason || string(r.Data) != "inapp" {
				t.Fatalf("result %+v", r)
			}
			s := c.Stats()
			if s.FallbackByReason[row.reason] != 1 || s.FallbackTotal != 1 || s.Errors != 0 {
				t.Errorf("stats %+v", s)
			}
			if failed := s.Breaker.ConsecutiveFailures == 1; failed != row.failure {
				t.Errorf("breaker failures %d, want a failure: %v", s.Breaker.ConsecutiveFailures, row.failure)
			}
			var p *ProblemError
			if errors.As(r.Err, &p) && p.Status != 0 && row.reason != ReasonServerError && p.Code == "" {
				t.Errorf("cause %v has no code", p)
			}
			checkEquation(t, c)
		})
	}
}

// dropHeader removes one header just before the answer is written.
type dropHeader struct {
	http.ResponseWriter
	name string
}

func (d *dropHeader) WriteHeader(status int) {
	d.Header().Del(d.name)
	d.ResponseWriter.WriteHeader(status)
}

func (d *dropHeader) Write(b []byte) (int, error) {
	d.Header().Del(d.name)
	return d.ResponseWriter.Write(b)
}

func TestContractErrorsAreReturnedNeverFallenBack(t *testing.T) {
	for _, row := range []struct {
		status int
		code   string
	}{{400, "invalid_json"}, {400, "duplicate_key"}, {404, "not_found"}, {405, "method_not_allowed"},
		{413, "payload_too_large"}, {415, "unsupported_media_type"}, {422, "number_precision"}} {
		t.Run(fmt.Sprint(row.status, " ", row.code), func(t *testing.T) {
			f := newFake(t, false)
			f.setNorm(answer(row.status, row.code))
			c := newTestClient(t, f, Options{Breaker: BreakerOptions{FailureThreshold: 1}})
			r, err := c.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{})
			var p *ProblemError
			if !errors.As(err, &p) || p.Status != row.status || p.Code != row.code || r.Path != "" {
				t.Fatalf("result %+v, error %v", r, err)
			}
			s := c.Stats()
			if s.Errors != 1 || s.ErrorsByCode[row.code] != 1 || s.FallbackTotal != 0 || s.Breaker.State != BreakerClosed {
				t.Errorf("stats %+v", s)
			}
			checkEquation(t, c)
		})
	}
}

func TestSchemaViolationCarriesItsErrors(t *testing.T) {
	f := newFake(t, false)
	f.setNorm(func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("X-Request-Id", "req-9")
		w.WriteHeader(422)
		io.WriteString(w, `{"type":"urn:normd:problem:schema_violation","title":"t","status":422,"detail":"d","code":"schema_violation",`+
			`"errors":[{"instance_path":"/order/id","schema_path":"/properties/order/required","message":"\"id\" is a required property"}]}`)
	})
	c := newTestClient(t, f, Options{})
	_, err := c.Norm(context.Background(), []byte(`{"order":{}}`), CallOptions{Schema: "order.v1"})
	var p *ProblemError
	if !errors.As(err, &p) {
		t.Fatalf("error %v", err)
	}
	if len(p.Errors) != 1 || p.Errors[0].InstancePath != "/order/id" || p.Errors[0].SchemaPath == "" ||
		p.RequestID != "req-9" || p.Problem["detail"] != "d" || p.Detail != "d" {
		t.Errorf("problem %+v", p)
	}
}

func TestNoSocketOrNobodyListeningIsConnection(t *testing.T) {
	dir := shortTempDir(t)
	refused := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", refused)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // leave a socket file nobody accepts on
	ln.Close()
	for name, path := range map[string]string{"ENOENT": filepath.Join(dir, "missing.sock"), "ECONNREFUSED": refused} {
		t.Run(name, func(t *testing.T) {
			c := newTestClient(t, nil, Options{SocketPath: path})
			r, err := c.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{})
			if err != nil || r.Reason != ReasonConnection || r.Err == nil {
				t.Fatalf("result %+v, error %v", r, err)
			}
		})
	}
}

func TestTCPTakesOverWhenTheSocketIsMissing(t *testing.T) {
	f := newFake(t, true)
	c := newTestClient(t, f, Options{SocketPath: filepath.Join(f.dir, "missing.sock"), TCPAddr: f.tcp})
	r, err := c.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{})
	if err != nil || r.Path != PathNormd {
		t.Fatalf("result %+v, error %v", r, err)
	}
	if s := c.Stats(); s.ByTransport.TCP != 1 || s.ByTransport.Unix != 0 || s.TransportFailovers != 1 {
		t.Errorf("stats %+v", s)
	}
	_, port, _ := net.SplitHostPort(f.tcp)
	tcpOnly := newTestClient(t, f, Options{TCPAddr: ":" + port})
	if r, err := tcpOnly.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{}); err != nil || r.Path != PathNormd {
		t.Fatalf("TCP-only client: %+v, %v", r, err)
	}
}

func TestLocalTimeoutAbortsTheRequestAndFallsBack(t *testing.T) {
	f := newFake(t, false)
	release := make(chan struct{})
	defer close(release)
	f.setNorm(func(w http.ResponseWriter, r *http.Request, body []byte) {
		select {
		case <-r.Context().Done(): // the client hung up
		case <-release:
		}
	})
	c := newTestClient(t, f, Options{Deadline: 20 * time.Millisecond, Slack: time.Millisecond})
	r, err := c.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{})
	if err != nil || r.Reason != ReasonTimeout || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("result %+v, error %v", r, err)
	}
	// normd sees the connection close and stops working for nobody.
	waitFor(t, 5*time.Second, "the fake to see the client hang up", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.abandoned == 1
	})
	if s := c.Stats(); s.Breaker.ConsecutiveFailures != 1 {
		t.Errorf("a timeout is a breaker failure: %+v", s.Breaker)
	}
}

func TestContextDeadlineShortensTheBudget(t *testing.T) {
	f := newFake(t, false)
	c := newTestClient(t, f, Options{Deadline: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Norm(ctx, []byte(`{"a":1}`), CallOptions{}); err != nil {
		t.Fatal(err)
	}
	ms, err := strconv.Atoi(f.lastSeen().header.Get("X-Deadline-Ms"))
	// What is left of the 5 s, minus the 5 ms slack: the local wait ends before ctx's.
	if err != nil || ms < 1 || ms > 4995 {
		t.Errorf("X-Deadline-Ms %d (%v) under a 5 s context", ms, err)
	}
}

func TestCallerCancellationIsNotAFallbackAndFreesTheProbe(t *testing.T) {
	f := newFake(t, false)
	clk := &manualClock{}
	c := newTestClient(t, f, Options{Deadline: time.Hour, Now: clk.Now, Breaker: BreakerOptions{FailureThreshold: 1, Cooldown: time.Second}})
	f.setNorm(answer(500, "internal"))
	c.Norm(context.Background(), []byte(`{}`), CallOptions{}) // opens the breaker
	clk.advance(time.Second)

	arrived := make(chan struct{})
	f.setNorm(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		close(arrived)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := c.Norm(ctx, []byte(`{}`), CallOptions{}) // the probe, cancelled by its caller
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	s := c.Stats()
	if s.Canceled != 1 || s.Calls != 1 || s.Breaker.State != BreakerHalfOpen {
		t.Fatalf("stats %+v", s)
	}
	f.setNorm(nil)
	if r, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{}); err != nil || r.Path != PathNormd {
		t.Fatalf("the next probe: %+v, %v", r, err)
	}
	if s := c.Stats(); s.Breaker.State != BreakerClosed {
		t.Fatalf("breaker %+v", s.Breaker)
	}
	checkEquation(t, c)
}

func TestDoneContextAndBadArgumentsSendNothing(t *testing.T) {
	f := newFake(t, false)
	c := newTestClient(t, f, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, call := range map[string]func() error{
		"done context": func() error { _, err := c.Norm(ctx, []byte(`{}`), CallOptions{}); return err },
		"CR/LF in header": func() error {
			_, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{Header: http.Header{"Traceparent": {"a\r\nX-Evil: 1"}}})
			return err
		},
		"bad header name": func() error {
			_, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{Header: http.Header{"a b": {"1"}}})
			return err
		},
		"negative budget": func() error {
			_, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{Deadline: -time.Second})
			return err
		},
		"newline in reqid": func() error {
			_, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{RequestID: "a\nb"})
			return err
		},
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n, _, _ := f.counts(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
	if s := c.Stats(); s.Calls != 0 || s.Breaker.ConsecutiveFailures != 0 {
		t.Errorf("stats %+v", s)
	}
}

// cutAfter50 answers 200 with a digest and 50 body bytes, then drops the connection.
func cutAfter50(w http.ResponseWriter) {
	w.Header().Set("X-Normd-Digest", "sha-256=:x:")
	w.WriteHeader(200)
	w.Write(bytes.Repeat([]byte("x"), 50))
	w.(http.Flusher).Flush()
	conn, _, _ := w.(http.Hijacker).Hijack()
	conn.Close()
}
func TestResponseBodies(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 3000)
	for _, row := range []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request, []byte)
		max    int64
		reason Reason
	}{
		{"cut short of its Content-Length", func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Header().Set("Content-Length", "100")
			cutAfter50(w)
		}, 0, ReasonConnection},
		{"chunked, cut mid-way", func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			cutAfter50(w)
		}, 0, ReasonConnection},
		{"Content-Length past MaxResponseBytes", func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Header().Set("Content-Length", "3000")
			w.Header().Set("X-Normd-Digest", "sha-256=:x:")
			w.Write(big)
		}, 1000, ReasonConnection},
		{"chunked past MaxResponseBytes", func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Header().Set("X-Normd-Digest", "sha-256=:x:")
			for i := 0; i < 3; i++ {
				w.Write(big[:1000])
				w.(http.Flusher).Flush()
			}
		}, 1000, ReasonConnection},
		{"chunked, whole", func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Header().Set("X-Normd-Digest", "sha-256=:x:")
			for i := 0; i < 3; i++ {
				w.Write(big[:1000])
				w.(http.Flusher).Flush()
			}
		}, 0, ""},
	} {
		t.Run(row.name, func(t *testing.T) {
			f := newFake(t, false)
			f.setNorm(row.answer)
			c := newTestClient(t, f, Options{MaxResponseBytes: row.max})
			r, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{})
			if err != nil || r.Reason != row.reason {
				t.Fatalf("result %+v, error %v", r, err)
			}
			if row.reason == "" && !bytes.Equal(r.Data, big) {
				t.Fatalf("body of %d bytes, want %d", len(r.Data), len(big))
			}
		})
	}
}

func TestStaleKeepAliveConnectionIsRetriedOnceOnAFreshOne(t *testing.T) {
	f := newFake(t, false)
	// The second request on any connection finds it closed by the server,
	// as when normd's idle timeout closes it just as the client reuses it.
	f.setNorm(func(w http.ResponseWriter, r *http.Request, body []byte) {
		if requestsOnConn(r) > 1 {
			hangUp(w, r, body)
			return
		}
		okNorm(w, r, body)
	})
	c := newTestClient(t, f, Options{Deadline: 5 * time.Second})
	for i := 0; i < 2; i++ {
		if r, err := c.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{}); err != nil || r.Path != PathNormd {
			t.Fatalf("call %d: %+v, %v", i, r, err)
		}
	}
	if s := c.Stats(); s.Retries != 1 || s.NormdOK != 2 {
		t.Errorf("stats %+v", s)
	}
	if n, _, conns := f.counts(); n != 3 || conns != 2 {
		t.Errorf("%d requests on %d connections", n, conns)
	}
}

func TestWithoutInAppAFallbackIsUnavailableError(t *testing.T) {
	c, err := New(Options{SocketPath: filepath.Join(shortTempDir(t), "missing.sock"), RolloutPercent: Int(100)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{})
	var u *UnavailableError
	if !errors.As(err, &u) || u.Reason != ReasonConnection || r.Reason != ReasonConnection {
		t.Fatalf("result %+v, error %v", r, err)
	}
	// A per-call in-app function is used when given, and gets the body as passed.
	var got []byte
	r, err = c.Norm(context.Background(), []byte(`{"x":1}`), CallOptions{InApp: func(_ context.Context, b []byte) ([]byte, error) {
		got = b
		return []byte("mine"), nil
	}})
	if err != nil || string(r.Data) != "mine" || string(got) != `{"x":1}` {
		t.Fatalf("per-call in-app: %+v, %v, body %q", r, err, got)
	}
	// Its own error is returned as is.
	boom := errors.New("boom")
	if _, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{InApp: func(context.Context, []byte) ([]byte, error) { return nil, boom }}); err != boom {
		t.Fatalf("in-app error %v", err)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	f := newFake(t, false)
	c, err := New(Options{SocketPath: f.sock, FlagsRefresh: 10 * time.Millisecond, InApp: staticInApp("x")})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Ready(context.Background()) {
		t.Fatal("not ready")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, flagsAtClose, _ := f.counts()
	if _, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{}); err != ErrClosed {
		t.Errorf("Norm after Close: %v", err)
	}
	if err := c.RefreshFlags(context.Background()); err != ErrClosed {
		t.Errorf("RefreshFlags after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Close waited for the refresh goroutine, so no GET /flags can follow it.
	if _, flags, _ := f.counts(); flags != flagsAtClose {
		t.Errorf("GET /flags after Close: %d, then %d", flagsAtClose, flags)
	}
}

func TestNewRejectsNonsense(t *testing.T) {
	for name, o := range map[string]Options{
		"no transport":      {},
		"negative deadline": {SocketPath: "x", Deadline: -1},
		"rollout 101":       {SocketPath: "x", RolloutPercent: Int(101)},
		"negative breaker":  {SocketPath: "x", Breaker: BreakerOptions{FailureThreshold: -1}},
	} {
		if c, err := New(o); err == nil {
			c.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestExpvarStatsEncodesTheKitVocabulary(t *testing.T) {
	f := newFake(t, false)
	c := newTestClient(t, f, Options{})
	c.Norm(context.Background(), []byte(`{}`), CallOptions{})
	m := statsMap(t, c)
	for _, key := range []string{"calls", "normd_ok", "fallback_by_reason.shadow", "breaker.state", "flags.shadow_percent", "shadow.mismatch_keys", "rollout_override"} {
		if _, ok := lookup(m, key); !ok {
			t.Errorf("%s missing from %v", key, m)
		}
	}
	if v, _ := lookup(m, "normd_ok"); v != float64(1) {
		t.Errorf("normd_ok %v", v)
	}
	c.ResetStats()
	if s := c.Stats(); s.Calls != 0 || s.NormdOK != 0 {
		t.Errorf("after ResetStats %+v", s)
	}
}

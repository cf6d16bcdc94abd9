package normd

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// newShadowClient routes every call to shadow (rollout 0, shadow 100).
func newShadowClient(t *testing.T, f *fake, o Options) *Client {
	t.Helper()
	f.setFlags(`{"flags":{"norm":{"enabled":true,"rollout_percent":0,"shadow_percent":100}}}`)
	o.SocketPath = f.sock
	o.FlagsRefresh = NoRefresh
	if o.Deadline == 0 {
		o.Deadline = 10 * time.Second // the shadow calls' budget too
	}
	if o.InApp == nil {
		o.InApp = staticInApp(`{"a":1}`)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !c.Ready(context.Background()) {
		t.Fatal("no flags")
	}
	return c
}

func waitShadow(t *testing.T, c *Client, n uint64) ShadowStats {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d shadow calls to end", n), func() bool {
		s := c.Stats().Shadow
		return s.Compared+s.NormdFailures >= n
	})
	return c.Stats().Shadow
}

func TestShadowSendsTheBodyAsItWasEvenIfTheCallerReusesIt(t *testing.T) {
	f := newFake(t, false)
	c := newShadowClient(t, f, Options{})
	body := []byte(`{"a":1}`)
	r, err := c.Norm(context.Background(), body, CallOptions{Key: strp("k1"), RequestID: "req-1"})
	if err != nil || r.Path != PathInApp || r.Reason != ReasonShadow || string(r.Data) != `{"a":1}` {
		t.Fatalf("result %+v, error %v", r, err)
	}
	copy(body, `{"b":2}`) // the caller's buffer, reused at once
	if s := waitShadow(t, c, 1); s.Matches != 1 || s.Started != 1 {
		t.Fatalf("shadow %+v", s)
	}
	if got := f.lastSeen(); string(got.body) != `{"a":1}` || got.header.Get("X-Request-Id") != "req-1" {
		t.Errorf("normd got %q, headers %v", got.body, got.header)
	}
	st := c.Stats()
	if st.NormdOK != 0 || st.FallbackByReason[ReasonShadow] != 1 || st.Calls != 1 {
		t.Errorf("the shadow moved the caller's counters: %+v", st)
	}
}

func TestShadowCanonicalHookForInAppResultsThatAreNotCanonicalBytes(t *testing.T) {
	f := newFake(t, false)
	// This app's in-app path returns its canonical JSON gzip'd, like normd.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"a":1}`))
	zw.Close()
	c := newShadowClient(t, f, Options{
		InApp:           staticInApp(gz.String()),
		ShadowCanonical: func(inapp []byte) ([]byte, error) { return gunzipBytes(inapp) },
	})
	c.Norm(context.Background(), []byte(`{"a": 1}`), CallOptions{Key: strp("k")})
	if s := waitShadow(t, c, 1); s.Matches != 1 {
		t.Fatalf("shadow %+v", s)
	}
	// A hook that cannot make canonical bytes: nothing to compare, nothing sent.
	c2 := newShadowClient(t, f, Options{ShadowCanonical: func([]byte) ([]byte, error) { return nil, errors.New("no") }})
	n, _, _ := f.counts()
	c2.Norm(context.Background(), []byte(`{}`), CallOptions{})
	if s := c2.Stats().Shadow; s.Skipped != 1 || s.Started != 0 {
		t.Errorf("shadow %+v", s)
	}
	if n2, _, _ := f.counts(); n2 != n {
		t.Errorf("a skipped shadow call was sent")
	}
}

func TestShadowMismatchKeysAreTheLatestSixteenOldestFirst(t *testing.T) {
	f := newFake(t, false)
	c := newShadowClient(t, f, Options{InApp: staticInApp(`not what normd says`)})
	for i := 0; i < 20; i++ {
		c.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{Key: strp(fmt.Sprint("order-", i))})
		waitShadow(t, c, uint64(i+1))
	}
	c.Norm(context.Background(), []byte(`{"a":1}`), CallOptions{}) // no key: counted, not sampled
	s := waitShadow(t, c, 21)
	if s.Mismatches != 21 || len(s.MismatchKeys) != 16 || s.MismatchKeys[0] != "order-4" || s.MismatchKeys[15] != "order-19" {
		t.Fatalf("shadow %+v", s)
	}
}

func TestShadowNeverMovesTheBreakerAndIsSkippedWhenItIsOpen(t *testing.T) {
	f := newFake(t, false)
	f.setNorm(answer(500, "internal"))
	c := newShadowClient(t, f, Options{Breaker: BreakerOptions{FailureThreshold: 1}})
	c.Norm(context.Background(), []byte(`{}`), CallOptions{})
	s := waitShadow(t, c, 1)
	if b := c.Stats().Breaker; s.NormdFailures != 1 || b.State != BreakerClosed || b.ConsecutiveFailures != 0 {
		t.Fatalf("shadow %+v, breaker %+v", s, b)
	}
	// With the breaker open (as a real call failing would leave it), a
	// shadowed call is skipped and sends nothing.
	c.breaker.failure(mustAcquire(t, c.breaker))
	n, _, _ := f.counts()
	c.Norm(context.Background(), []byte(`{}`), CallOptions{})
	if n2, _, _ := f.counts(); n2 != n || c.Stats().Shadow.Skipped == 0 {
		t.Errorf("shadow sent with the breaker open: %+v", c.Stats().Shadow)
	}
}

func TestCloseCancelsShadowCallsAndWaitsForThem(t *testing.T) {
	f := newFake(t, false)
	arrived := make(chan struct{})
	f.setNorm(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		close(arrived)
		<-r.Context().Done() // held until the client goes away
	})
	c := newShadowClient(t, f, Options{Deadline: time.Hour})
	c.Norm(context.Background(), []byte(`{}`), CallOptions{})
	<-arrived
	c.Close() // returns only once the shadow goroutine has ended
	if s := c.Stats().Shadow; s.Started != 1 || s.NormdFailures != 1 {
		t.Errorf("shadow %+v", s)
	}
}

func TestShadowSkippedWhenTheInAppPathFails(t *testing.T) {
	f := newFake(t, false)
	boom := errors.New("boom")
	c := newShadowClient(t, f, Options{InApp: func(context.Context, []byte) ([]byte, error) { return nil, boom }})
	if _, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{}); err != boom {
		t.Fatalf("error %v", err)
	}
	if s := c.Stats().Shadow; s.Skipped != 1 || s.Started != 0 {
		t.Errorf("shadow %+v", s)
	}
}

package normd

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	for _, row := range []struct {
		body              string
		ok                bool
		enabled           bool
		rollout, shadow   int
		version, mtimeOut string
	}{
		{`{"version":"v3","mtime":"2026-01-02T03:04:05Z","flags":{"norm":{"enabled":true,"rollout_percent":25,"shadow_percent":40}}}`, true, true, 25, 40, "v3", "2026-01-02T03:04:05Z"},
		{`{"flags":{}}`, true, true, 100, 0, "", ""},
		{`{"flags":{"norm":null}}`, true, true, 100, 0, "", ""},
		{`{"flags":{"norm":{}}}`, true, true, 100, 0, "", ""},
		{`{"flags":{"norm":{"enabled":false}}}`, true, false, 100, 0, "", ""},
		{`{"flags":{"norm":{"rollout_percent":12.9,"shadow_percent":250}}}`, true, true, 12, 100, "", ""},
		{`{"flags":{"norm":{"rollout_percent":-5}}}`, true, true, 0, 0, "", ""},
		{`{"version":7,"flags":{"norm":{}}}`, true, true, 100, 0, "7", ""},
		{`{"flags":{"norm":{"enabled":"false"}}}`, false, false, 0, 0, "", ""},
		{`{"flags":{"norm":{"rollout_percent":"0"}}}`, false, false, 0, 0, "", ""},
		{`{"flags":{"norm":{"shadow_percent":null}}}`, false, false, 0, 0, "", ""},
		{`{"flags":{"norm":[]}}`, false, false, 0, 0, "", ""},
		{`{"flags":[]}`, false, false, 0, 0, "", ""},
		{`{"norm":{"enabled":false}}`, false, false, 0, 0, "", ""},
		{`[]`, false, false, 0, 0, "", ""},
		{`null`, false, false, 0, 0, "", ""},
		{`<html>502</html>`, false, false, 0, 0, "", ""},
	} {
		f, err := parseFlags([]byte(row.body), "norm")
		if (err == nil) != row.ok {
			t.Errorf("%s: error %v", row.body, err)
			continue
		}
		if err == nil && (f.enabled != row.enabled || f.rollout != row.rollout || f.shadow != row.shadow || f.version != row.version || f.mtime != row.mtimeOut) {
			t.Errorf("%s: %+v", row.body, *f)
		}
	}
}

func TestFirstFlagsFetchAtNewAndUnavailableUntilThen(t *testing.T) {
	f := newFake(t, false)
	gate := make(chan struct{})
	f.mu.Lock()
	f.flags = func(w http.ResponseWriter, r *http.Request) {
		<-gate
		io.WriteString(w, `{"flags":{"norm":{"rollout_percent":0}}}`)
	}
	f.mu.Unlock()
	c, err := New(Options{SocketPath: f.sock, InApp: staticInApp("x")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Norm(context.Background(), []byte(`{}`), CallOptions{})
	if err != nil || r.Reason != ReasonUnavailable {
		t.Fatalf("before the first fetch: %+v, %v", r, err)
	}
	close(gate)
	if !c.Ready(context.Background()) {
		t.Fatalf("not ready: %+v", c.Stats().Flags)
	}
	r, err = c.Norm(context.Background(), []byte(`{}`), CallOptions{Key: strp("k")})
	if err != nil || r.Reason != ReasonRollout {
		t.Fatalf("after: %+v, %v", r, err)
	}
	if n, _, _ := f.counts(); n != 0 {
		t.Errorf("%d requests to /norm", n)
	}
}

func TestFailedFirstFetchIsRetriedSoonerThanThePeriod(t *testing.T) {
	f := newFake(t, false)
	f.mu.Lock()
	f.flags = func(w http.ResponseWriter, r *http.Request) { problem(w, 503, "not_ready") }
	f.mu.Unlock()
	c, err := New(Options{SocketPath: f.sock, FlagsRefresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Ready(context.Background()) {
		t.Fatal("ready on a failed fetch")
	}
	f.setFlags(`{"flags":{"norm":{"enabled":true}}}`)
	// With a 1 h period, only the quicker first retries can load it in time.
	waitFor(t, 10*time.Second, "flags to load", func() bool { return c.Stats().Flags.Loaded })
	if s := c.Stats().Flags; s.RefreshFailures < 1 || s.RefreshOK != 1 || s.LastError != "" {
		t.Errorf("flags %+v", s)
	}
}

func TestBackgroundRefreshPicksUpChanges(t *testing.T) {
	f := newFake(t, false)
	c, err := New(Options{SocketPath: f.sock, FlagsRefresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Ready(context.Background())
	f.setFlags(`{"version":"v2","flags":{"norm":{"enabled":true,"rollout_percent":7,"shadow_percent":9}}}`)
	waitFor(t, 10*time.Second, "the new rollout", func() bool { return c.Stats().Flags.RolloutPercent == 7 })
	if s := c.Stats().Flags; s.ShadowPercent != 9 || s.Version != "v2" || s.AgeMs < 0 {
		t.Errorf("flags %+v", s)
	}
}

func TestFailedRefreshesKeepTheLastGoodFlags(t *testing.T) {
	f := newFake(t, false)
	f.setFlags(`{"flags":{"norm":{"enabled":true,"rollout_percent":30}}}`)
	c, err := New(Options{SocketPath: f.sock, FlagsRefresh: NoRefresh})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Ready(context.Background())
	for _, bad := range []func(w http.ResponseWriter, r *http.Request){
		func(w http.ResponseWriter, r *http.Request) { problem(w, 500, "internal") },
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"norm":{"enabled":false}}`) },
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"flags":{"norm":{"enabled":0}}}`) },
		func(w http.ResponseWriter, r *http.Request) { hangUp(w, r, nil) },
	} {
		f.mu.Lock()
		f.flags = bad
		f.mu.Unlock()
		if err := c.RefreshFlags(context.Background()); err == nil {
			t.Error("a bad refresh succeeded")
		}
	}
	s := c.Stats().Flags
	if !s.Loaded || !s.Enabled || s.RolloutPercent != 30 || s.RefreshOK != 1 || s.RefreshFailures != 4 || s.LastError == "" {
		t.Errorf("flags %+v", s)
	}
}

func TestConcurrentRefreshesShareOneRequest(t *testing.T) {
	f := newFake(t, false)
	c, err := New(Options{SocketPath: f.sock, FlagsRefresh: NoRefresh})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Ready(context.Background())
	gate := make(chan struct{})
	f.mu.Lock()
	f.flags = func(w http.ResponseWriter, r *http.Request) {
		<-gate
		io.WriteString(w, `{"flags":{}}`)
	}
	f.mu.Unlock()
	first := make(chan error, 1)
	go func() { first <- c.RefreshFlags(context.Background()) }()
	waitFor(t, 5*time.Second, "the refresh to reach the server", func() bool { _, n, _ := f.counts(); return n == 2 })
	// A second refresh joins the one in flight; its own context only bounds its wait.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.RefreshFlags(done); err != context.Canceled {
		t.Errorf("joined refresh: %v", err)
	}
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, n, _ := f.counts(); n != 2 {
		t.Errorf("%d GET /flags, want 2 (the first at New, one shared)", n)
	}
}

func TestOtherFlagNamesAndTheOverride(t *testing.T) {
	f := newFake(t, false)
	f.setFlags(`{"flags":{"norm":{"enabled":false},"orders":{"rollout_percent":0}}}`)
	c, err := New(Options{SocketPath: f.sock, FlagName: "orders", FlagsRefresh: NoRefresh, InApp: staticInApp("x")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Ready(context.Background())
	if r, _ := c.Norm(context.Background(), []byte(`{}`), CallOptions{}); r.Reason != ReasonRollout {
		t.Errorf("flag orders at 0 %%: %+v", r)
	}
	fixed := newTestClient(t, f, Options{RolloutPercent: Int(100)})
	if r, _ := fixed.Norm(context.Background(), []byte(`{}`), CallOptions{}); r.Path != PathNormd {
		t.Errorf("fixed rollout: %+v", r)
	}
	if _, n, _ := f.counts(); n != 1 {
		t.Errorf("%d GET /flags: a fixed rollout must not fetch any", n)
	}
	if s := fixed.Stats(); s.RolloutOverride == nil || *s.RolloutOverride != 100 || s.Flags.Loaded {
		t.Errorf("stats %+v", s)
	}
}

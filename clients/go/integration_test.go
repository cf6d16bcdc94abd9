package normd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIntegration runs the client against the real binary (NORMD_BIN).
func TestIntegration(t *testing.T) {
	if normdBin() == "" {
		t.Skip("SKIPPED: set NORMD_BIN to a normd binary to run the integration test")
	}
	p := startNormd(t, map[string]any{"norm": map[string]any{"enabled": true, "rollout_percent": 100}})
	c, err := New(Options{
		SocketPath:   p.sock,
		FlagsRefresh: 100 * time.Millisecond,
		// A debug build is slow: this test checks behaviour, not latency.
		Deadline: 5 * time.Second,
		InApp:    staticInApp("inapp"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !c.Ready(ctx) {
		t.Fatalf("GET /flags failed: %s", c.Stats().Flags.LastError)
	}

	order, err := os.ReadFile("testdata/order-0000.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("200: canonical JSON, gzipped, headers and digest agree", func(t *testing.T) {
		for i, body := range [][]byte{order, []byte(`{"z":[3,2,1],"a":{"é":"注文","b":-0.5,"c":1E2},"m":"tab\there"}`)} {
			r, err := c.Norm(ctx, body, CallOptions{Key: strp(fmt.Sprint("it-", i)), RequestID: fmt.Sprint("go-it-", i)})
			if err != nil || r.Path != PathNormd {
				t.Fatalf("fixture %d: %+v, %v", i, r, err)
			}
			canon := gunzip(t, r.Data)
			if want := canonicalOf(t, body); string(canon) != string(want) {
				t.Errorf("fixture %d: canonical\n%s\nwant\n%s", i, canon, want)
			}
			if r.Encoding != "gzip" || r.InputBytes != int64(len(body)) || r.CanonicalBytes != int64(len(canon)) ||
				r.OutputBytes != int64(len(r.Data)) || r.Digest != digestOf(canon) || r.RequestID != fmt.Sprint("go-it-", i) {
				t.Errorf("fixture %d: metadata %+v", i, r)
			}
		}
		// With a schema: validated, and the schema is echoed.
		r, err := c.Norm(ctx, order, CallOptions{Schema: "order.v1"})
		if err != nil || r.Path != PathNormd || r.Schema != "order.v1" {
			t.Fatalf("with schema: %+v, %v", r, err)
		}
	})

	t.Run("contract errors are returned, never fallen back", func(t *testing.T) {
		for _, row := range []struct {
			body, schema string
			status       int
			code         string
		}{
			{`{"a":`, "", 400, "invalid_json"},
			{`{"a":1,"a":2}`, "", 400, "duplicate_key"},
			{`{"id":9007199254740993}`, "", 422, "number_precision"},
			{`{"schema_version":"order.v1"}`, "order.v1", 422, "schema_violation"},
		} {
			_, err := c.Norm(ctx, []byte(row.body), CallOptions{Schema: row.schema})
			var p *ProblemError
			if !errors.As(err, &p) || p.Status != row.status || p.Code != row.code {
				t.Errorf("%s: %v", row.body, err)
				continue
			}
			if row.code == "schema_violation" && (len(p.Errors) == 0 || p.Errors[0].SchemaPath == "") {
				t.Errorf("schema_violation without its errors: %+v", p)
			}
		}
		// An unknown selection is the caller's error too.
		if _, err := c.Norm(ctx, order, CallOptions{Profile: "no-such-profile"}); !isCode(err, "unknown_profile") {
			t.Errorf("unknown profile: %v", err)
		}
		if s := c.Stats(); s.FallbackTotal != 0 || s.Breaker.State != BreakerClosed {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("the flag turned off in the flags file reaches the client", func(t *testing.T) {
		writeJSONAtomic(t, p.flagsPath, map[string]any{"norm": map[string]any{"enabled": false, "rollout_percent": 100}})
		waitFor(t, 15*time.Second, "the client to see the flag off", func() bool {
			r, err := c.Norm(ctx, order, CallOptions{})
			return err == nil && r.Reason == ReasonDisabled
		})
	})

	t.Run("SIGTERM: exit 0, socket removed", func(t *testing.T) {
		c.Close()
		if !p.kill(syscall.SIGTERM) {
			t.Fatal("normd did not exit within 20 s of SIGTERM")
		}
		if p.exitErr != nil {
			t.Errorf("exit: %v", p.exitErr)
		}
		if _, err := os.Stat(p.sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket file still there: %v", err)
		}
	})
	checkEquation(t, c)
}

func isCode(err error, code string) bool {
	var p *ProblemError
	return errors.As(err, &p) && strings.EqualFold(p.Code, code)
}

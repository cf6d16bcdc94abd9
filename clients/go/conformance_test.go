package normd

// The runner of the language-neutral conformance kit (../conformance): every
// scenarios/*.json is one subtest, run against the server it names. Nothing
// here knows a scenario by name; unknown steps or fields fail the scenario.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const kitDir = "../conformance"

func TestConformanceRollout(t *testing.T) {
	var doc struct {
		Hash   string `json:"hash"`
		Modulo int    `json:"modulo"`
		Cases  []struct {
			Key     string `json:"key"`
			FNV1a32 uint32 `json:"fnv1a32"`
			Bucket  int    `json:"bucket"`
		} `json:"cases"`
	}
	decodeStrict(t, readFile(t, filepath.Join(kitDir, "rollout.json")), &doc)
	if doc.Hash != "fnv1a32" || doc.Modulo != 100 || len(doc.Cases) == 0 {
		t.Fatalf("rollout.json: hash %q modulo %d, %d cases", doc.Hash, doc.Modulo, len(doc.Cases))
	}
	for _, c := range doc.Cases {
		if h, b := FNV1a32(c.Key), Bucket(c.Key); h != c.FNV1a32 || b != c.Bucket {
			t.Errorf("key %q: fnv1a32 %d bucket %d, want %d and %d", c.Key, h, b, c.FNV1a32, c.Bucket)
		}
	}
}

func TestConformance(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(kitDir, "scenarios", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios in %s (%v)", kitDir, err)
	}
	for _, file := range files {
		file := file
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			t.Parallel()
			runScenario(t, file)
		})
	}
}

type scenario struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Server      string          `json:"server"`
	Fault       json.RawMessage `json:"fault"`
	Normd       *struct {
		Flags any      `json:"flags"`
		Args  []string `json:"args"`
	} `json:"normd"`
	Client kitClient         `json:"client"`
	Steps  []json.RawMessage `json:"steps"`
}

type kitClient struct {
	Transports          []string `json:"transports"`
	DeadlineMs          *int     `json:"deadline_ms"`
	TimeoutSlackMs      *int     `json:"timeout_slack_ms"`
	FailureThreshold    int      `json:"failure_threshold"`
	CooldownMs          *int     `json:"cooldown_ms"`
	RolloutPercent      *int     `json:"rollout_percent"`
	FlagsRefreshMs      int      `json:"flags_refresh_ms"`
	SocketMissing       bool     `json:"socket_missing"`
	ShadowMaxConcurrent int      `json:"shadow_max_concurrent"`
}

type kitCall struct {
	Key        *string         `json:"key"`
	Body       json.RawMessage `json:"body"`
	BodyText   *string         `json:"body_text"`
	DeadlineMs int             `json:"deadline_ms"`
	Query      map[string]any  `json:"query"`
	InApp      *string         `json:"inapp"`
}

type kitExpect struct {
	Path   Path   `json:"path"`
	Reason Reason `json:"reason"`
	Error  *struct {
		Status int    `json:"status"`
		Code   string `json:"code"`
	} `json:"error"`
	Encoding  string  `json:"encoding"`
	Digest    string  `json:"digest"`
	Canonical *string `json:"canonical"`
}

// server is the process a scenario runs against.
type server struct {
	sock string // where it listens (the client may be pointed elsewhere)
	tcp  string
	kill func() // SIGKILL and wait
	// normd only
	flagsPath string
}

// runScenario: start the server, build the client, run the steps, check
// the equation of the counters.
func runScenario(t *testing.T, file string) {
	var sc scenario
	decodeStrict(t, readFile(t, file), &sc)
	var srv server
	switch {
	case sc.Server == "fault" && sc.Normd == nil:
		srv = startFault(t, file)
	case sc.Server == "normd" && sc.Fault == nil && sc.Normd != nil:
		if normdBin() == "" {
			t.Skip("SKIPPED: a real-normd scenario; set NORMD_BIN to run it")
		}
		p := startNormd(t, sc.Normd.Flags, sc.Normd.Args...)
		srv = server{sock: p.sock, tcp: p.tcp, flagsPath: p.flagsPath, kill: func() { p.kill(syscall.SIGKILL) }}
	default:
		t.Fatalf("server %q with fault %v / normd %v", sc.Server, sc.Fault != nil, sc.Normd != nil)
	}

	clk := &manualClock{}
	o := Options{
		Deadline:       time.Second,
		Now:            clk.Now,
		RolloutPercent: sc.Client.RolloutPercent,
		FlagsRefresh:   NoRefresh,
		Breaker:        BreakerOptions{FailureThreshold: sc.Client.FailureThreshold},
		// The runner's in-app answer comes per call (CallOptions.InApp).
		InApp:             staticInApp("{}"),
		MaxShadowInFlight: sc.Client.ShadowMaxConcurrent,
	}
	if d := sc.Client.DeadlineMs; d != nil {
		o.Deadline = ms(*d)
	}
	if s := sc.Client.TimeoutSlackMs; s != nil {
		o.Slack = ms(*s)
		if *s == 0 {
			o.Slack = -1
		}
	}
	if cd := sc.Client.CooldownMs; cd != nil {
		o.Breaker.Cooldown = ms(*cd)
	}
	if sc.Client.FlagsRefreshMs > 0 {
		o.FlagsRefresh = ms(sc.Client.FlagsRefreshMs)
	}
	transports := sc.Client.Transports
	if transports == nil {
		transports = []string{"unix"}
	}
	for _, tr := range transports {
		switch tr {
		case "unix":
			o.SocketPath = srv.sock
			if sc.Client.SocketMissing {
				o.SocketPath = filepath.Join(filepath.Dir(srv.sock), "missing.sock")
			}
		case "tcp":
			o.TCPAddr = srv.tcp
		default:
			t.Fatalf("client.transports: unknown %q", tr)
		}
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if o.RolloutPercent == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c.Ready(ctx) // the first fetch settled, whatever its outcome
		cancel()
	}

	r := &runner{t: t, c: c, clk: clk, srv: srv}
	for i, raw := range sc.Steps {
		if err := r.step(raw); err != nil {
			t.Fatalf("step %d %s: %v", i, raw, err)
		}
	}
	s := c.Stats()
	if s.Calls != s.NormdOK+s.FallbackTotal+s.Errors {
		t.Fatalf("calls %d != normd_ok %d + fallback_total %d + errors %d", s.Calls, s.NormdOK, s.FallbackTotal, s.Errors)
	}
}

type runner struct {
	t   *testing.T
	c   *Client
	clk *manualClock
	srv server
}

// stepFields are the fields each step may have, by the field that names it.
var stepFields = map[string][]string{
	"call":            {"expect"},
	"advance_clock":   nil,
	"refresh_flags":   {"expect_ok"},
	"wait_flags":      nil,
	"write_flags":     nil,
	"kill_server":     nil,
	"remove_socket":   nil,
	"wait_shadow":     nil,
	"concurrent":      {"expect_outcomes"},
	"expect_stats":    nil,
	"expect_requests": nil,
}

func (r *runner) step(raw json.RawMessage) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	delete(fields, "note")
	var kind string
	for k := range fields {
		if _, ok := stepFields[k]; ok {
			if kind != "" {
				return fmt.Errorf("two step names, %s and %s", kind, k)
			}
			kind = k
		}
	}
	if kind == "" {
		return fmt.Errorf("unknown step")
	}
	for k := range fields {
		if k != kind && !contains(stepFields[kind], k) {
			return fmt.Errorf("unknown field %q of %s", k, kind)
		}
	}
	v := fields[kind]
	switch kind {
	case "call":
		var call kitCall
		var want kitExpect
		if err := strict(v, &call); err != nil {
			return err
		}
		if err := strict(fields["expect"], &want); err != nil {
			return fmt.Errorf("expect: %w", err)
		}
		res, err := r.call(call)
		return checkCall(res, err, want)
	case "advance_clock":
		var n int
		if err := strict(v, &n); err != nil {
			return err
		}
		r.clk.advance(ms(n))
	case "refresh_flags":
		var want bool
		if err := strict(fields["expect_ok"], &want); err != nil {
			return fmt.Errorf("expect_ok: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.c.RefreshFlags(ctx); (err == nil) != want {
			return fmt.Errorf("refresh ok %v (%v), want %v", err == nil, err, want)
		}
	case "wait_flags":
		var want map[string]any
		if err := strict(v, &want); err != nil {
			return err
		}
		end := time.Now().Add(5 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = r.c.RefreshFlags(ctx)
			cancel()
			flags, _ := lookup(statsMap(r.t, r.c), "flags")
			if subsetEqual(want, flags) {
				return nil
			}
			if time.Now().After(end) {
				return fmt.Errorf("flags %v after 5 s", flags)
			}
			time.Sleep(50 * time.Millisecond)
		}
	case "write_flags":
		if r.srv.flagsPath == "" {
			return errors.New("write_flags needs a normd server")
		}
		var flags any
		if err := strict(v, &flags); err != nil {
			return err
		}
		writeJSONAtomic(r.t, r.srv.flagsPath, flags)
	case "kill_server":
		r.srv.kill()
	case "remove_socket":
		if err := os.Remove(r.srv.sock); err != nil {
			return err
		}
	case "wait_shadow":
		var n uint64
		if err := strict(v, &n); err != nil {
			return err
		}
		end := time.Now().Add(5 * time.Second)
		for {
			s := r.c.Stats().Shadow
			if s.Compared+s.NormdFailures >= n {
				return nil
			}
			if time.Now().After(end) {
				return fmt.Errorf("shadow %+v after 5 s", s)
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "concurrent":
		var calls []kitCall
		var want map[string]int
		if err := strict(v, &calls); err != nil {
			return err
		}
		if err := strict(fields["expect_outcomes"], &want); err != nil {
			return fmt.Errorf("expect_outcomes: %w", err)
		}
		got := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var firstErr error
		for _, call := range calls {
			call := call
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := r.call(call)
				var p *ProblemError
				var outcome string
				switch {
				case errors.As(err, &p):
					outcome = "error:" + p.Code
				case err != nil:
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				case res.Path == PathNormd:
					outcome = "normd"
				default:
					outcome = string(res.Reason)
				}
				mu.Lock()
				got[outcome]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("outcomes %v, want %v", got, want)
		}
	case "expect_stats":
		var want map[string]any
		if err := strict(v, &want); err != nil {
			return err
		}
		m := statsMap(r.t, r.c)
		var diffs []string
		for key, w := range want {
			got, ok := lookup(m, key)
			if !ok && strings.HasPrefix(key, "errors_by_code.") {
				got, ok = float64(0), true // a counter never incremented reads 0
			}
			if !ok || !reflect.DeepEqual(got, w) {
				diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", key, got, w))
			}
		}
		if diffs != nil {
			sort.Strings(diffs)
			return errors.New(strings.Join(diffs, "; "))
		}
	case "expect_requests":
		var want struct {
			Count       int               `json:"count"`
			Path        string            `json:"path"`
			LastHeaders map[string]string `json:"last_headers"`
		}
		if err := strict(v, &want); err != nil {
			return err
		}
		if want.Path == "" {
			want.Path = "/norm"
		}
		reqs, err := faultRequests(r.srv.sock)
		if err != nil {
			return err
		}
		var matching []faultRequest
		for _, q := range reqs {
			if q.Path == want.Path {
				matching = append(matching, q)
			}
		}
		if len(matching) != want.Count {
			return fmt.Errorf("%d requests to %s, want %d", len(matching), want.Path, want.Count)
		}
		for name, value := range want.LastHeaders {
			if got := matching[len(matching)-1].Headers[name]; got != value {
				return fmt.Errorf("last %s: %s %q, want %q", want.Path, name, got, value)
			}
		}
	}
	return nil
}

// call makes one Norm call from a kit call.
func (r *runner) call(k kitCall) (Result, error) {
	var body []byte
	switch {
	case k.BodyText != nil && k.Body == nil:
		body = []byte(*k.BodyText)
	case k.Body != nil && k.BodyText == nil:
		var buf bytes.Buffer
		if err := json.Compact(&buf, k.Body); err != nil {
			return Result{}, err
		}
		body = buf.Bytes()
	default:
		return Result{}, errors.New("a call needs exactly one of body and body_text")
	}
	inapp := "{}"
	if k.InApp != nil {
		inapp = *k.InApp
	}
	o := CallOptions{Key: k.Key, InApp: staticInApp(inapp), Deadline: ms(k.DeadlineMs)}
	for name, v := range k.Query {
		s := fmt.Sprint(v)
		switch name {
		case "profile":
			o.Profile = s
		case "schema":
			o.Schema = s
		case "encoding":
			o.Encoding = s
		case "level":
			f, ok := v.(float64)
			if !ok {
				return Result{}, fmt.Errorf("query level %v is not a number", v)
			}
			o.Level = Int(int(f))
		default:
			return Result{}, fmt.Errorf("unknown query %q", name)
		}
	}
	return r.c.Norm(context.Background(), body, o)
}

func checkCall(res Result, err error, want kitExpect) error {
	if want.Error != nil {
		var p *ProblemError
		if !errors.As(err, &p) {
			return fmt.Errorf("no contract error: result %+v, error %v", res, err)
		}
		if p.Status != want.Error.Status || p.Code != want.Error.Code {
			return fmt.Errorf("contract error %d %s, want %d %s", p.Status, p.Code, want.Error.Status, want.Error.Code)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("error %v (result %+v)", err, res)
	}
	if want.Path != "" && res.Path != want.Path {
		return fmt.Errorf("path %s (reason %q, cause %v), want %s", res.Path, res.Reason, res.Err, want.Path)
	}
	if want.Reason != "" && res.Reason != want.Reason {
		return fmt.Errorf("reason %q (cause %v), want %q", res.Reason, res.Err, want.Reason)
	}
	if want.Encoding != "" && res.Encoding != want.Encoding {
		return fmt.Errorf("encoding %q, want %q", res.Encoding, want.Encoding)
	}
	if want.Digest != "" && res.Digest != want.Digest {
		return fmt.Errorf("digest %q, want %q", res.Digest, want.Digest)
	}
	if want.Canonical != nil {
		got, err := gunzipBytes(res.Data)
		if err != nil || string(got) != *want.Canonical {
			return fmt.Errorf("canonical %q (%v), want %q", got, err, *want.Canonical)
		}
	}
	return nil
}

// startFault starts the kit's fault server for scenario file on a temp
// socket and 127.0.0.1, and kills it at the end of the test.
func startFault(t *testing.T, file string) server {
	dir := shortTempDir(t)
	srv := server{sock: filepath.Join(dir, "normd.sock")}
	portFile := filepath.Join(dir, "port")
	cmd := exec.Command("python3", filepath.Join(kitDir, "fault_server.py"), "--socket", srv.sock, "--tcp-port-file", portFile, file)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("python3 fault_server.py: %v", err)
	}
	done := make(chan struct{})
	var once sync.Once
	wait := func() { once.Do(func() { cmd.Wait(); close(done) }) }
	srv.kill = func() {
		cmd.Process.Kill()
		wait()
	}
	t.Cleanup(srv.kill)

	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("first line %q", line)
		}
		ready <- err
		io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("fault server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fault server not ready within 10 s")
	}
	port, err := os.ReadFile(portFile)
	if err != nil {
		t.Fatal(err)
	}
	srv.tcp = "127.0.0.1:" + strings.TrimSpace(string(port))
	return srv
}

type faultRequest struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   string            `json:"query"`
	Headers map[string]string `json:"headers"`
}

// faultRequests is what the fault server recorded (GET /_fault/requests).
func faultRequests(sock string) ([]faultRequest, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://fault/_fault/requests")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var reqs []faultRequest
	return reqs, json.NewDecoder(res.Body).Decode(&reqs)
}

// statsMap is the client's Stats in the kit's vocabulary: its JSON form.
func statsMap(t testing.TB, c *Client) map[string]any {
	t.Helper()
	b, err := json.Marshal(c.ExpvarStats())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// lookup resolves a dotted key ("breaker.state") in m.
func lookup(m map[string]any, key string) (any, bool) {
	var v any = m
	for _, part := range strings.Split(key, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return v, true
}

// subsetEqual: every key of want has the same value in got.
func subsetEqual(want map[string]any, got any) bool {
	obj, ok := got.(map[string]any)
	if !ok {
		return false
	}
	for k, w := range want {
		if !reflect.DeepEqual(obj[k], w) {
			return false
		}
	}
	return true
}

// strict decodes raw into v, refusing unknown fields (a runner that ignores
// a field passes scenarios it never ran).
func strict(raw json.RawMessage, v any) error {
	if raw == nil {
		return errors.New("missing")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func decodeStrict(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := strict(b, v); err != nil {
		t.Fatalf("decode: %v", err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gunzipBytes(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

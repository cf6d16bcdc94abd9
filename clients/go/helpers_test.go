package normd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// shortTempDir is a temp dir whose path fits a Unix socket address (108
// bytes); t.TempDir() names it after the test and can be too long.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "normd-go-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// waitFor polls cond every 10ms for at most max; it fails the test if cond
// never holds.
func waitFor(t testing.TB, max time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(max)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("waited %v for %s", max, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// canonicalOf is RFC 8785 for the simple documents of these tests (no
// floats): encoding/json sorts map keys and writes compact output.
func canonicalOf(t testing.TB, body []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("canonicalOf: %v", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func gunzip(t testing.TB, data []byte) []byte {
	t.Helper()
	out, err := gunzipBytes(data)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// seen is what the fake recorded of one POST /norm.
type seen struct {
	query  string
	header http.Header
	body   []byte
}

// fake is a programmable stand-in for normd on a temp Unix socket (and
// 127.0.0.1 when asked). norm shapes the answer of POST /norm; flags that
// of GET /flags. Its zero behaviour is normd's happy path.
type fake struct {
	t    testing.TB
	dir  string
	sock string
	tcp  string

	mu         sync.Mutex
	norm       func(w http.ResponseWriter, r *http.Request, body []byte)
	flags      func(w http.ResponseWriter, r *http.Request)
	flagsDoc   string
	normCount  int
	flagsCount int
	conns      int
	abandoned  int
	last       seen
	servers    []*httptest.Server
}

func newFake(t testing.TB, withTCP bool) *fake {
	t.Helper()
	f := &fake{t: t, dir: shortTempDir(t), flagsDoc: `{"version":"v1","mtime":null,"flags":{"norm":{"enabled":true,"rollout_percent":100}}}`}
	f.sock = filepath.Join(f.dir, "normd.sock")
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	f.start(ln)
	if withTCP {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.tcp = ln.Addr().String()
		f.start(ln)
	}
	t.Cleanup(f.close)
	return f
}

func (f *fake) start(ln net.Listener) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connRequestsKey{}, new(int32))
	}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
		}
	}
	srv.Start()
	f.mu.Lock()
	f.servers = append(f.servers, srv)
	f.mu.Unlock()
}

// connRequestsKey holds a per-connection request counter in the fake's contexts.
type connRequestsKey struct{}

// requestsOnConn is how many requests r's connection has carried, r included.
func requestsOnConn(r *http.Request) int32 {
	return atomic.AddInt32(r.Context().Value(connRequestsKey{}).(*int32), 1)
}

func (f *fake) close() {
	f.mu.Lock()
	servers := f.servers
	f.servers = nil
	f.mu.Unlock()
	for _, s := range servers {
		s.CloseClientConnections()
		s.Close()
	}
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/flags":
		f.mu.Lock()
		f.flagsCount++
		h, doc := f.flags, f.flagsDoc
		f.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, doc)
	case r.Method == http.MethodPost && r.URL.Path == "/norm":
		f.mu.Lock()
		f.normCount++
		f.last = seen{query: r.URL.RawQuery, header: r.Header.Clone(), body: body}
		h := f.norm
		f.mu.Unlock()
		if h == nil {
			h = okNorm
		}
		h(w, r, body)
		if r.Context().Err() != nil {
			f.mu.Lock()
			f.abandoned++
			f.mu.Unlock()
		}
	default:
		problem(w, 404, "not_found")
	}
}

func (f *fake) setNorm(h func(w http.ResponseWriter, r *http.Request, body []byte)) {
	f.mu.Lock()
	f.norm = h
	f.mu.Unlock()
}

func (f *fake) setFlags(doc string) {
	f.mu.Lock()
	f.flagsDoc = doc
	f.flags = nil
	f.mu.Unlock()
}

func (f *fake) counts() (norm, flags, conns int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.normCount, f.flagsCount, f.conns
}

func (f *fake) lastSeen() seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// okNorm is normd's happy path: canonical JSON, gzip, every X-Normd-* header.
func okNorm(w http.ResponseWriter, r *http.Request, body []byte) {
	var v any
	if json.Unmarshal(body, &v) != nil {
		problem(w, 400, "invalid_json")
		return
	}
	canon, _ := json.Marshal(v)
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, 1)
	zw.Write(canon)
	zw.Close()
	sum := sha256.Sum256(canon)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", fmt.Sprint(out.Len()))
	h.Set("X-Normd-Encoding", "gzip")
	h.Set("X-Normd-Input-Bytes", fmt.Sprint(len(body)))
	h.Set("X-Normd-Canonical-Bytes", fmt.Sprint(len(canon)))
	h.Set("X-Normd-Output-Bytes", fmt.Sprint(out.Len()))
	h.Set("X-Normd-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
	if id := r.Header.Get("X-Request-Id"); id != "" {
		h.Set("X-Request-Id", id)
	} else {
		h.Set("X-Request-Id", "fake-1")
	}
	w.Write(out.Bytes())
}

func problem(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "urn:normd:problem:" + code, "title": code, "status": status, "detail": "fake " + code, "code": code})
}

func answer(status int, code string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) { problem(w, status, code) }
}

// hangUp closes the connection after reading the request, before any answer byte.
func hangUp(w http.ResponseWriter, _ *http.Request, _ []byte) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

// normdProc is a real normd started from NORMD_BIN for a test.
type normdProc struct {
	cmd       *exec.Cmd
	dir       string
	sock      string
	flagsPath string
	tcp       string
	stderr    string
	done      chan struct{}
	exitErr   error
}

// normdBin is NORMD_BIN, or "" (the caller skips, loudly).
func normdBin() string { return os.Getenv("NORMD_BIN") }

// schemasDir is the repository's schemas/, or NORMD_SCHEMAS.
func schemasDir() string {
	if d := os.Getenv("NORMD_SCHEMAS"); d != "" {
		return d
	}
	d, _ := filepath.Abs("../../schemas")
	return d
}

// startNormd starts NORMD_BIN serve on a temp socket and 127.0.0.1:0 with
// flags (nil: no flags file content, "{}" written) plus args, waits (10 s
// at most) for GET /readyz to answer 200 over the socket, and reads the TCP
// address from its "normd serving" log line. The process is killed at the
// end of the test, pass or fail.
func startNormd(t testing.TB, flags any, args ...string) *normdProc {
	t.Helper()
	bin := normdBin()
	p := &normdProc{dir: shortTempDir(t), done: make(chan struct{})}
	p.sock = filepath.Join(p.dir, "normd.sock")
	p.flagsPath = filepath.Join(p.dir, "flags.json")
	p.stderr = filepath.Join(p.dir, "stderr.log")
	if flags == nil {
		flags = map[string]any{}
	}
	writeJSONAtomic(t, p.flagsPath, flags)
	errFile, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	argv := append([]string{"serve", "--socket", p.sock, "--listen", "127.0.0.1:0", "--schemas", schemasDir(),
		"--flags", p.flagsPath, "--flags-poll-ms", "50", "--drain-delay-ms", "0"}, args...)
	p.cmd = exec.Command(bin, argv...)
	p.cmd.Stderr = errFile
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		if t.Failed() {
			if b, err := os.ReadFile(p.stderr); err == nil {
				t.Logf("normd stderr (tail):\n%s", tail(string(b), 4000))
			}
		}
	})

	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.sock)
		},
	}}
	defer probe.CloseIdleConnections()
	end := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("normd exited at start: %v", p.exitErr)
		default:
		}
		if p.tcp == "" {
			p.tcp = servingAddr(p.stderr)
		}
		if p.tcp != "" {
			if res, err := probe.Get("http://normd/readyz"); err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == 200 {
					return p
				}
			}
		}
		if time.Now().After(end) {
			t.Fatalf("normd not ready within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// servingAddr is the "listen" field of normd's "normd serving" log line.
func servingAddr(stderrPath string) string {
	f, err := os.Open(stderrPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "normd serving" && line.Listen != "" {
			return line.Listen
		}
	}
	return ""
}

// kill signals normd and waits for its exit (20 s at most: a SIGTERM
// drains); it reports whether it exited by itself.
func (p *normdProc) kill(sig syscall.Signal) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return false
	}
}

// writeJSONAtomic writes v as JSON to path through a temp file and a rename,
// as a ConfigMap update does, so a poll never sees half a file.
func writeJSONAtomic(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func strp(s string) *string { return &s }

// staticInApp answers every fallback with the same bytes.
func staticInApp(b string) InApp {
	return func(context.Context, []byte) ([]byte, error) { return []byte(b), nil }
}

// manualClock is the breaker's injected clock; it moves only on advance.
type manualClock struct {
	mu  sync.Mutex
	now time.Duration
}

func (c *manualClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	c.mu.Unlock()
}

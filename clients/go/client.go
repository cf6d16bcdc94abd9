package normd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// InApp is the app's own implementation of the same job, run when normd is
// not used. It gets the body exactly as passed to Norm. Unless
// Options.ShadowCanonical says otherwise, its bytes are taken as the in-app
// canonical JSON when a shadow call compares digests.
type InApp func(ctx context.Context, body []byte) ([]byte, error)

// NoRefresh as Options.FlagsRefresh: GET /flags once at New, then only on
// RefreshFlags.
const NoRefresh time.Duration = -1

// Options configure a Client. Zero values mean the defaults shown.
type Options struct {
	// SocketPath is normd's Unix socket, the preferred transport.
	SocketPath string
	// TCPAddr is normd's TCP address ("127.0.0.1:8081"; ":8081" means
	// 127.0.0.1). Used alone without a SocketPath; with one, only when the
	// socket cannot be connected (ENOENT, ECONNREFUSED, EACCES).
	TCPAddr string

	// Deadline is the budget of a call (default 20ms), sent as X-Deadline-Ms.
	// A context deadline that leaves less shortens it.
	Deadline time.Duration
	// Slack is how long past the budget the client waits for normd's answer
	// before it gives up and falls back as timeout (default 5ms; negative: none).
	Slack time.Duration

	// Profile, Schema, Encoding and Level are the default selection
	// (?profile=…), each overridable per call. Level nil: normd's default.
	Profile, Schema, Encoding string
	Level                     *int

	// InApp is the fallback; CallOptions.InApp overrides it per call. Without
	// either, a fallback returns an *UnavailableError.
	InApp InApp

	// FlagName is the flag of GET /flags that routes the calls (default "norm").
	FlagName string
	// FlagsRefresh is the background refresh period (default 5s; NoRefresh:
	// none). Until the first fetch succeeds it is retried sooner.
	FlagsRefresh time.Duration
	// FlagsTimeout bounds one GET /flags (default 1s).
	FlagsTimeout time.Duration
	// RolloutPercent, when set, is a fixed rollout 0..100 used instead of
	// GET /flags (no flag requests at all, no shadow). normd's own 503
	// disabled is still honoured.
	RolloutPercent *int

	Breaker BreakerOptions
	// Now is a monotonic clock for the breaker (default: time since New).
	// Tests inject one to drive the cooldown.
	Now func() time.Duration

	// MaxResponseBytes caps a response body read into memory (default 64 MiB);
	// a larger one is a connection fallback.
	MaxResponseBytes int64
	// MaxConns caps the connections to normd (default 32); calls past it wait
	// for one, inside their deadline.
	MaxConns int
	// IdleTimeout closes idle keep-alive connections (default 5s, below
	// normd's 10 s header-read timeout).
	IdleTimeout time.Duration

	// ShadowCanonical turns an in-app result into canonical JSON bytes for
	// shadow comparison, for apps whose InApp does not return them (e.g. it
	// returns them gzip'd). Default: the in-app bytes as they are.
	ShadowCanonical func(inapp []byte) ([]byte, error)
	// MaxShadowInFlight bounds concurrent shadow calls (default 4); past it a
	// shadowed call is not sent and is counted as skipped.
	MaxShadowInFlight int
}

// BreakerOptions configure the circuit breaker.
type BreakerOptions struct {
	// FailureThreshold consecutive failures open it (default 5).
	FailureThreshold int
	// Cooldown is how long it stays open before one probe (default 5s).
	Cooldown time.Duration
}

// CallOptions are the per-call settings of Norm. Zero values take the
// client's defaults.
type CallOptions struct {
	// Key is the sticky rollout key (an order or user id); "" is a key like
	// any other. nil: a random bucket per call.
	Key                       *string
	Profile, Schema, Encoding string
	Level                     *int
	// Deadline overrides Options.Deadline.
	Deadline time.Duration
	// RequestID is sent as X-Request-Id.
	RequestID string
	// Header is passed through (e.g. traceparent); the client's own headers win.
	Header http.Header
	// InApp overrides Options.InApp.
	InApp InApp
}

// Result is the answer of one call.
type Result struct {
	// Path says who did the work: PathNormd or PathInApp.
	Path Path
	// Reason says why the in-app path was taken ("" for normd).
	Reason Reason
	// Data is normd's canonical JSON compressed with Encoding, or what the
	// in-app function returned.
	Data []byte
	// Encoding, Digest ("sha-256=:<base64>:" of the canonical bytes), the
	// sizes, Schema and RequestID are normd's X-Normd-* and X-Request-Id.
	Encoding                                string
	Digest                                  string
	InputBytes, CanonicalBytes, OutputBytes int64
	Schema                                  string
	RequestID                               string
	// Err is the failure that made the call fall back (a *ProblemError for
	// 429/503/504/500), if any. It is not returned as Norm's error.
	Err error
}

// Int returns a pointer to v, for Options.RolloutPercent and the Level fields.
func Int(v int) *int { return &v }

// Client is safe for concurrent use. Close it to stop its background work.
type Client struct {
	transport *http.Transport
	breaker   *breaker
	flags     atomic.Pointer[flagState]
	// rnd is the state of the random bucket of calls without a key.
	rnd atomic.Uint64

	deadline, slack  time.Duration
	inApp            InApp
	defaults         selection
	normURL          string
	flagsURL         string
	flagName         string
	flagsTimeout     time.Duration
	rolloutOverride  int // -1: the flags route
	maxResponseBytes int64
	shadowCanonical  func([]byte) ([]byte, error)
	shadowSlots      chan struct{}

	// base is cancelled by Close: the flags loop, flag fetches and shadow calls run under it.
	base       context.Context
	stop       context.CancelFunc
	firstFlags chan struct{}
	wg         sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	count      counters
	flagsFetch *flagsFetch
}

// origin is the URL prefix of every request; the host is never resolved
// (the transport dials the socket or TCPAddr).
const origin = "http://normd"

// New builds a client and, unless RolloutPercent is set, starts fetching
// GET /flags in the background.
func New(o Options) (*Client, error) {
	if o.SocketPath == "" && o.TCPAddr == "" {
		return nil, fmt.Errorf("%w: normd.New needs a SocketPath and/or a TCPAddr", errInvalidArgument)
	}
	if o.Deadline < 0 || o.FlagsTimeout < 0 || o.Breaker.FailureThreshold < 0 || o.Breaker.Cooldown < 0 ||
		o.MaxResponseBytes < 0 || o.MaxConns < 0 || o.IdleTimeout < 0 || o.MaxShadowInFlight < 0 {
		return nil, fmt.Errorf("%w: negative option", errInvalidArgument)
	}
	if o.RolloutPercent != nil && (*o.RolloutPercent < 0 || *o.RolloutPercent > 100) {
		return nil, fmt.Errorf("%w: RolloutPercent %d is outside 0..100", errInvalidArgument, *o.RolloutPercent)
	}
	tcp := o.TCPAddr
	if len(tcp) > 0 && tcp[0] == ':' {
		tcp = "127.0.0.1" + tcp
	}
	now := o.Now
	if now == nil {
		start := time.Now()
		now = func() time.Duration { return time.Since(start) }
	}
	c := &Client{
		breaker:          newBreaker(orInt(o.Breaker.FailureThreshold, 5), orDuration(o.Breaker.Cooldown, 5*time.Second), now),
		deadline:         orDuration(o.Deadline, 20*time.Millisecond),
		slack:            orDuration(o.Slack, 5*time.Millisecond),
		inApp:            o.InApp,
		defaults:         selection{o.Profile, o.Schema, o.Encoding, o.Level},
		flagsURL:         origin + "/flags",
		flagName:         o.FlagName,
		flagsTimeout:     orDuration(o.FlagsTimeout, time.Second),
		rolloutOverride:  -1,
		maxResponseBytes: o.MaxResponseBytes,
		shadowCanonical:  o.ShadowCanonical,
		shadowSlots:      make(chan struct{}, orInt(o.MaxShadowInFlight, 4)),
		firstFlags:       make(chan struct{}),
		count:            newCounters(),
	}
	if c.slack < 0 {
		c.slack = 0
	}
	if c.flagName == "" {
		c.flagName = "norm"
	}
	if c.maxResponseBytes == 0 {
		c.maxResponseBytes = 64 << 20
	}
	c.normURL = c.defaults.url(CallOptions{})
	c.rnd.Store(uint64(time.Now().UnixNano()))
	c.transport = newTransport(o.SocketPath, tcp, orInt(o.MaxConns, 32), orDuration(o.IdleTimeout, 5*time.Second), func() {
		c.mu.Lock()
		c.count.failovers++
		c.mu.Unlock()
	})
	c.base, c.stop = context.WithCancel(context.Background())
	if o.RolloutPercent != nil {
		c.rolloutOverride = *o.RolloutPercent
		close(c.firstFlags)
	} else {
		c.wg.Add(1)
		go c.flagsLoop(orDuration(o.FlagsRefresh, 5*time.Second))
	}
	return c, nil
}

// Close stops the flags refresh, cancels shadow calls and waits for both,
// then closes idle connections. Calls already out end by their own deadline;
// later calls return ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	c.transport.CloseIdleConnections()
	return nil
}

// Norm normalizes, validates and compresses body (JSON text, sent as is) in
// normd when the flags, the rollout and the breaker allow it, else — or when
// normd cannot — with the in-app function.
//
// The error is a *ProblemError when normd refused the request or the data
// (400, 404, 405, 413, 415, 422): those never fall back. It is the in-app
// function's own error when that failed, an *UnavailableError when there is
// no in-app function, ctx.Err() when the caller's context was already done
// or was cancelled, and ErrClosed after Close.
func (c *Client) Norm(ctx context.Context, body []byte, o CallOptions) (Result, error) {
	if c.base.Err() != nil {
		return Result{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	// Everything that can fail on a bad argument happens before the breaker
	// hands out a (probe) ticket, so a caller's bug never wedges it.
	call, err := c.prepare(ctx, &o)
	if err != nil {
		return Result{}, err
	}
	reason := c.route(o.Key)
	switch reason {
	case "":
	case ReasonShadow:
		return c.shadowed(ctx, body, &o, call)
	default:
		return c.fallBack(ctx, reason, body, &o, nil)
	}
	t, ok := c.breaker.acquire()
	if !ok {
		return c.fallBack(ctx, ReasonBreakerOpen, body, &o, nil)
	}

	xctx, cancel := context.WithTimeout(ctx, call.budget+c.slack)
	res, err := c.roundTrip(xctx, http.MethodPost, call.target, call.header, body)
	timedOut := xctx.Err() != nil
	cancel()
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			// The caller gave up: says nothing about normd.
			c.breaker.abandon(t)
			c.mu.Lock()
			c.count.canceled++
			c.mu.Unlock()
			return Result{}, ctx.Err()
		}
		c.breaker.failure(t)
		if timedOut {
			return c.fallBack(ctx, ReasonTimeout, body, &o, fmt.Errorf("normd: no answer within %v: %w", call.budget+c.slack, err))
		}
		return c.fallBack(ctx, ReasonConnection, body, &o, err)
	}
	return c.answer(ctx, t, res, body, &o)
}

// answer turns a complete response into the call's outcome (see judge).
func (c *Client) answer(ctx context.Context, t ticket, res *response, body []byte, o *CallOptions) (Result, error) {
	h := res.header
	if res.status == http.StatusOK {
		digest := h.Get("X-Normd-Digest")
		if digest == "" {
			c.breaker.failure(t)
			return c.fallBack(ctx, ReasonServerError, body, o, errors.New("normd: 200 without X-Normd-Digest"))
		}
		c.breaker.success(t)
		c.mu.Lock()
		c.count.calls++
		c.count.normdOK++
		c.mu.Unlock()
		return Result{
			Path:           PathNormd,
			Data:           res.body,
			Encoding:       h.Get("X-Normd-Encoding"),
			Digest:         digest,
			InputBytes:     headerInt(h, "X-Normd-Input-Bytes"),
			CanonicalBytes: headerInt(h, "X-Normd-Canonical-Bytes"),
			OutputBytes:    headerInt(h, "X-Normd-Output-Bytes"),
			Schema:         h.Get("X-Normd-Schema"),
			RequestID:      h.Get("X-Request-Id"),
		}, nil
	}
	p := parseProblem(res.status, res.body, h.Get("X-Request-Id"))
	v := judge(res.status, p.Code)
	if v.failure {
		c.breaker.failure(t)
	} else {
		c.breaker.success(t)
	}
	if !v.contract {
		return c.fallBack(ctx, v.reason, body, o, p)
	}
	c.mu.Lock()
	c.count.calls++
	c.count.errors++
	c.count.errorsByCode[p.Code]++
	c.mu.Unlock()
	return Result{RequestID: p.RequestID}, p
}

// fallBack counts the decision and runs the in-app function.
func (c *Client) fallBack(ctx context.Context, reason Reason, body []byte, o *CallOptions, cause error) (Result, error) {
	c.mu.Lock()
	c.count.calls++
	c.count.fallbackTotal++
	c.count.fallbackByReason[reason]++
	c.mu.Unlock()
	r := Result{Path: PathInApp, Reason: reason, Err: cause}
	fn := o.InApp
	if fn == nil {
		fn = c.inApp
	}
	if fn == nil {
		return r, &UnavailableError{Reason: reason, Cause: cause}
	}
	data, err := fn(ctx, body)
	r.Data = data
	return r, err
}

// route decides, before any I/O, whether the call may ask normd: the flag,
// then the sticky rollout, then shadow. "" means ask normd.
func (c *Client) route(key *string) Reason {
	rollout, shadow := c.rolloutOverride, 0
	if rollout < 0 {
		f := c.flags.Load()
		if f == nil {
			return ReasonUnavailable
		}
		if !f.enabled {
			return ReasonDisabled
		}
		rollout, shadow = f.rollout, f.shadow
	}
	if rollout >= 100 {
		return ""
	}
	if rollout <= 0 && shadow <= 0 {
		return ReasonRollout
	}
	var bucket int
	if key != nil {
		bucket = Bucket(*key)
	} else {
		bucket = c.randomBucket()
	}
	switch {
	case bucket < rollout:
		return ""
	case bucket < shadow:
		return ReasonShadow
	}
	return ReasonRollout
}

// randomBucket is splitmix64 over an atomic counter: uniform, lock-free, and
// not the global math/rand source (seeded with 1 before Go 1.20).
func (c *Client) randomBucket() int {
	x := c.rnd.Add(0x9e3779b97f4a7c15)
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return int(x % 100)
}

// prepared is a call's request, built once, used by the call and its shadow.
type prepared struct {
	target string
	header http.Header
	// budget is the whole number of milliseconds sent as X-Deadline-Ms.
	budget time.Duration
}

var contentTypeJSON = []string{"application/json"}

// prepare checks the call's arguments and builds its request. The budget is
// the call's (or the client's) Deadline, shortened so that budget + slack
// ends before ctx's deadline: the local wait never outlives the caller's.
func (c *Client) prepare(ctx context.Context, o *CallOptions) (prepared, error) {
	if o.Deadline < 0 {
		return prepared{}, fmt.Errorf("%w: negative Deadline", errInvalidArgument)
	}
	budget := c.deadline
	if o.Deadline > 0 {
		budget = o.Deadline
	}
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) - c.slack; left < budget {
			budget = left
		}
	}
	ms := int64(budget / time.Millisecond)
	if ms < 1 {
		ms = 1 // normd takes an integer >= 1
	}
	target := c.normURL
	if o.Profile != "" || o.Schema != "" || o.Encoding != "" || o.Level != nil {
		target = c.defaults.url(*o)
	}
	h := make(http.Header, 3+len(o.Header))
	for name, values := range o.Header {
		if !validHeaderName(name) {
			return prepared{}, fmt.Errorf("%w: header name %q", errInvalidArgument, name)
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return prepared{}, fmt.Errorf("%w: value of header %q", errInvalidArgument, name)
			}
		}
		h[http.CanonicalHeaderKey(name)] = values
	}
	h["Content-Type"] = contentTypeJSON
	h["X-Deadline-Ms"] = []string{strconv.FormatInt(ms, 10)}
	if o.RequestID != "" {
		if !validHeaderValue(o.RequestID) {
			return prepared{}, fmt.Errorf("%w: RequestID %q", errInvalidArgument, o.RequestID)
		}
		h["X-Request-Id"] = []string{o.RequestID}
	}
	return prepared{target: target, header: h, budget: time.Duration(ms) * time.Millisecond}, nil
}

// selection is the client's default ?profile=&schema=&encoding=&level=.
type selection struct {
	profile, schema, encoding string
	level                     *int
}

// url is POST /norm's URL with each selection key from the call, else from
// the defaults; unset ones are left out.
func (s selection) url(o CallOptions) string {
	q := url.Values{}
	for _, kv := range [...][2]string{{"profile", pick(o.Profile, s.profile)}, {"schema", pick(o.Schema, s.schema)}, {"encoding", pick(o.Encoding, s.encoding)}} {
		if kv[1] != "" {
			q.Set(kv[0], kv[1])
		}
	}
	if l := o.Level; l != nil {
		q.Set("level", strconv.Itoa(*l))
	} else if s.level != nil {
		q.Set("level", strconv.Itoa(*s.level))
	}
	if len(q) == 0 {
		return origin + "/norm"
	}
	return origin + "/norm?" + q.Encode()
}

func pick(call, dflt string) string {
	if call != "" {
		return call
	}
	return dflt
}

// validHeaderName: an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, b) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue: no control characters but HTAB (no CR/LF smuggling).
// net/http would refuse them too, but only at send time, where the failure
// would count against normd.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

func headerInt(h http.Header, name string) int64 {
	n, err := strconv.ParseInt(h.Get(name), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func orInt(v, dflt int) int {
	if v == 0 {
		return dflt
	}
	return v
}

func orDuration(v, dflt time.Duration) time.Duration {
	if v == 0 {
		return dflt
	}
	return v
}

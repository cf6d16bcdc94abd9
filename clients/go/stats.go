package normd

import "time"

// Stats is a snapshot of the client's counters: every decision it made, plus
// the breaker and the flags. Its JSON form (the field tags) is the
// vocabulary the conformance kit and the Node client use.
//
// Calls = NormdOK + FallbackTotal + Errors. A call rejected before it started
// (a bad argument, a done context, a closed client) is not counted; a call its
// caller cancelled mid-way is counted only in Canceled.
type Stats struct {
	Calls            uint64            `json:"calls"`
	NormdOK          uint64            `json:"normd_ok"`
	FallbackTotal    uint64            `json:"fallback_total"`
	FallbackByReason map[Reason]uint64 `json:"fallback_by_reason"`
	Errors           uint64            `json:"errors"`
	ErrorsByCode     map[string]uint64 `json:"errors_by_code"`
	Canceled         uint64            `json:"canceled"`
	// Retries counts resends on a fresh connection after a reused keep-alive
	// connection turned out closed by normd.
	Retries uint64 `json:"retries"`
	// TransportFailovers counts dials that went to TCP because the socket could not be connected.
	TransportFailovers uint64 `json:"transport_failovers"`
	// ByTransport counts HTTP exchanges (GET /flags, shadow calls and error
	// answers included) by the transport that carried them.
	ByTransport TransportStats `json:"by_transport"`
	Breaker     BreakerStats   `json:"breaker"`
	// RolloutOverride is Options.RolloutPercent, or nil when the flags route.
	RolloutOverride *int        `json:"rollout_override"`
	Flags           FlagsStats  `json:"flags"`
	Shadow          ShadowStats `json:"shadow"`
}

// TransportStats counts exchanges per transport.
type TransportStats struct {
	Unix uint64 `json:"unix"`
	TCP  uint64 `json:"tcp"`
}

// BreakerStats is the circuit breaker's state.
type BreakerStats struct {
	State               BreakerState `json:"state"`
	ConsecutiveFailures int          `json:"consecutive_failures"`
	OpenedTotal         uint64       `json:"opened_total"`
}

// FlagsStats is what the client knows of GET /flags.
type FlagsStats struct {
	// Loaded: a flags document was fetched at least once; until then calls fall back as unavailable.
	Loaded         bool   `json:"loaded"`
	Enabled        bool   `json:"enabled"`
	RolloutPercent int    `json:"rollout_percent"`
	ShadowPercent  int    `json:"shadow_percent"`
	Version        string `json:"version"`
	Mtime          string `json:"mtime"`
	// AgeMs is the time since the last successful fetch (-1 before one).
	AgeMs           int64  `json:"age_ms"`
	RefreshOK       uint64 `json:"refresh_ok"`
	RefreshFailures uint64 `json:"refresh_failures"`
	// LastError says why the last refresh failed ("" after a success).
	LastError string `json:"last_error"`
}

// ShadowStats counts shadow calls. Started = Compared + NormdFailures once
// every started call has ended; Skipped calls were never started.
type ShadowStats struct {
	Started       uint64 `json:"started"`
	Compared      uint64 `json:"compared"`
	Matches       uint64 `json:"matches"`
	Mismatches    uint64 `json:"mismatches"`
	NormdFailures uint64 `json:"normd_failures"`
	Skipped       uint64 `json:"skipped"`
	// MismatchKeys are the keys of the latest mismatches (never payloads), oldest first.
	MismatchKeys []string `json:"mismatch_keys"`
}

// maxMismatchKeys bounds ShadowStats.MismatchKeys.
const maxMismatchKeys = 16

// counters are the client's own tallies, guarded by Client.mu.
type counters struct {
	calls, normdOK, fallbackTotal, errors, canceled uint64
	fallbackByReason                                map[Reason]uint64
	errorsByCode                                    map[string]uint64
	retries, failovers                              uint64
	byTransport                                     TransportStats
	flagsOK, flagsFailures                          uint64
	flagsLastError                                  string
	shadow                                          ShadowStats
}

func newCounters() counters {
	c := counters{fallbackByReason: make(map[Reason]uint64, len(Reasons)), errorsByCode: map[string]uint64{}}
	for _, r := range Reasons {
		c.fallbackByReason[r] = 0
	}
	return c
}

// Stats returns a snapshot of every counter.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	k := c.count
	s := Stats{
		Calls:              k.calls,
		NormdOK:            k.normdOK,
		FallbackTotal:      k.fallbackTotal,
		FallbackByReason:   make(map[Reason]uint64, len(k.fallbackByReason)),
		Errors:             k.errors,
		ErrorsByCode:       make(map[string]uint64, len(k.errorsByCode)),
		Canceled:           k.canceled,
		Retries:            k.retries,
		TransportFailovers: k.failovers,
		ByTransport:        k.byTransport,
		Shadow:             k.shadow,
	}
	for r, n := range k.fallbackByReason {
		s.FallbackByReason[r] = n
	}
	for code, n := range k.errorsByCode {
		s.ErrorsByCode[code] = n
	}
	s.Shadow.MismatchKeys = append([]string{}, k.shadow.MismatchKeys...)
	s.Flags.RefreshOK, s.Flags.RefreshFailures, s.Flags.LastError = k.flagsOK, k.flagsFailures, k.flagsLastError
	c.mu.Unlock()

	s.Breaker = c.breaker.snapshot()
	if c.rolloutOverride >= 0 {
		p := c.rolloutOverride
		s.RolloutOverride = &p
	}
	s.Flags.AgeMs = -1
	if f := c.flags.Load(); f != nil {
		s.Flags.Loaded = true
		s.Flags.Enabled, s.Flags.RolloutPercent, s.Flags.ShadowPercent = f.enabled, f.rollout, f.shadow
		s.Flags.Version, s.Flags.Mtime = f.version, f.mtime
		s.Flags.AgeMs = time.Since(f.fetchedAt).Milliseconds()
	}
	return s
}

// ExpvarStats is Stats as an any, for expvar.Func (which encodes it with
// the JSON tags above); the package itself does not import expvar, whose init
// would register a handler on the app's http.DefaultServeMux.
func (c *Client) ExpvarStats() any { return c.Stats() }

// ResetStats zeroes the counters (not the breaker, not the flags).
func (c *Client) ResetStats() {
	c.mu.Lock()
	c.count = newCounters()
	c.mu.Unlock()
}

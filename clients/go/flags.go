package normd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"
)

// flagState is the flag that routes the calls, as last fetched. It is never
// changed once published, so routing reads it without a lock.
type flagState struct {
	enabled         bool
	rollout, shadow int
	version, mtime  string
	fetchedAt       time.Time
}

// firstFlagsRetry is the first retry of a failed first GET /flags; it
// doubles up to the refresh period, so a client started before normd routes
// soon after normd is up instead of a whole period later.
const firstFlagsRetry = 100 * time.Millisecond

var flagsHeader = http.Header{"Accept": {"application/json"}}

// errNotFlags: a 200 whose body is not a flags document (an array, {}, a
// health document) must not move the rollout.
var errNotFlags = errors.New("GET /flags: body is not a flags document")

// parseFlags reads a GET /flags body ({"flags": {...}, ...}). The flag
// called name, missing or null, or a field of it missing, means enabled at
// 100 % with no shadow: normd's own default. A malformed one is an error, so
// the last good flags stay.
func parseFlags(body []byte, name string) (*flagState, error) {
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil || doc == nil {
		return nil, errNotFlags
	}
	var flags map[string]json.RawMessage
	if raw, ok := doc["flags"]; !ok || json.Unmarshal(raw, &flags) != nil || flags == nil {
		return nil, errNotFlags
	}
	f := &flagState{enabled: true, rollout: 100, version: jsonText(doc["version"]), mtime: jsonText(doc["mtime"])}
	raw, ok := flags[name]
	if !ok || string(raw) == "null" {
		return f, nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil || fields == nil {
		return nil, fmt.Errorf("GET /flags: flag %q is not an object", name)
	}
	// A null field is a wrong type, not a missing one (Unmarshal would skip it).
	if v, ok := fields["enabled"]; ok {
		if string(v) == "null" || json.Unmarshal(v, &f.enabled) != nil {
			return nil, fmt.Errorf("GET /flags: %s.enabled is not a boolean", name)
		}
	}
	for _, p := range []struct {
		field string
		dst   *int
	}{{"rollout_percent", &f.rollout}, {"shadow_percent", &f.shadow}} {
		v, ok := fields[p.field]
		if !ok {
			continue
		}
		var n float64
		if string(v) == "null" || json.Unmarshal(v, &n) != nil {
			return nil, fmt.Errorf("GET /flags: %s.%s is not a number", name, p.field)
		}
		*p.dst = clampPercent(int(math.Max(-1, math.Min(101, math.Floor(n)))))
	}
	return f, nil
}

// jsonText is a string value unquoted, any other value as its JSON text, null as "".
func jsonText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if string(raw) == "null" {
		return ""
	}
	return string(raw)
}

// flagsFetch is one GET /flags in flight; concurrent refreshes share it.
type flagsFetch struct {
	done chan struct{}
	err  error
}

// RefreshFlags fetches GET /flags once and waits for it (or for ctx). On
// any failure the last good flags stay in use. Concurrent calls share one
// request, bounded by Options.FlagsTimeout whatever ctx says.
func (c *Client) RefreshFlags(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	f := c.flagsFetch
	if f == nil {
		f = &flagsFetch{done: make(chan struct{})}
		c.flagsFetch = f
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			f.err = c.fetchFlags()
			c.mu.Lock()
			c.flagsFetch = nil
			c.mu.Unlock()
			close(f.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) fetchFlags() error {
	ctx, cancel := context.WithTimeout(c.base, c.flagsTimeout)
	defer cancel()
	res, err := c.roundTrip(ctx, http.MethodGet, c.flagsURL, flagsHeader, nil)
	var f *flagState
	switch {
	case err != nil:
		err = fmt.Errorf("GET /flags: %w", err)
	case res.status != http.StatusOK:
		err = fmt.Errorf("GET /flags answered %d", res.status)
	default:
		f, err = parseFlags(res.body, c.flagName)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.count.flagsFailures++
		c.count.flagsLastError = err.Error()
		return err
	}
	f.fetchedAt = time.Now()
	c.flags.Store(f)
	c.count.flagsOK++
	c.count.flagsLastError = ""
	return nil
}

// flagsLoop fetches the flags at start, then every period (sooner until the
// first success); period < 0 stops after the first fetch. Close ends it.
func (c *Client) flagsLoop(period time.Duration) {
	defer c.wg.Done()
	_ = c.RefreshFlags(c.base)
	close(c.firstFlags)
	if period < 0 {
		return
	}
	retry := firstFlagsRetry
	for {
		wait := period
		if c.flags.Load() == nil && retry < period {
			wait = retry
			retry *= 2
		}
		t := time.NewTimer(wait)
		select {
		case <-c.base.Done():
			t.Stop()
			return
		case <-t.C:
		}
		_ = c.RefreshFlags(c.base)
	}
}

// Ready waits until the first GET /flags has settled (or ctx is done) and
// reports whether the client has flags to route by. Norm does not wait for
// it: until flags are known, calls fall back as unavailable.
func (c *Client) Ready(ctx context.Context) bool {
	if c.rolloutOverride >= 0 {
		return true
	}
	select {
	case <-c.firstFlags:
	case <-ctx.Done():
	}
	return c.flags.Load() != nil
}

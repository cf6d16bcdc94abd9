package normd

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
)

// Shadow mode: a call whose bucket is past the rollout but inside
// shadow_percent is answered in-app, and normd gets the same body in the
// background; its X-Normd-Digest is compared with the SHA-256 of the in-app
// canonical bytes. It lets a team see that normd agrees with their in-app
// code before routing real traffic. A shadow call never moves the breaker,
// is not sent while the breaker is not closed, and is bounded in number.

// shadowed answers a call in-app and, if it can, starts its shadow.
func (c *Client) shadowed(ctx context.Context, body []byte, o *CallOptions, call prepared) (Result, error) {
	r, err := c.fallBack(ctx, ReasonShadow, body, o, nil)
	if err != nil {
		c.shadowSkip() // nothing in-app to compare with
		return r, err
	}
	c.startShadow(o.Key, body, r.Data, call)
	return r, nil
}

// startShadow runs on the caller's goroutine: what it keeps of the call must
// not be the caller's, who owns body and the in-app result once Norm returns.
// So the digest is taken here and the body copied (only for the few shadow
// calls that get a slot).
func (c *Client) startShadow(key *string, body, inapp []byte, call prepared) {
	if c.breaker.current() != BreakerClosed {
		c.shadowSkip()
		return
	}
	select {
	case c.shadowSlots <- struct{}{}:
	default:
		c.shadowSkip()
		return
	}
	canonical := inapp
	if c.shadowCanonical != nil {
		var err error
		if canonical, err = c.shadowCanonical(inapp); err != nil {
			<-c.shadowSlots
			c.shadowSkip()
			return
		}
	}
	want := digestOf(canonical)
	payload := append([]byte(nil), body...)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.shadowSlots
		c.shadowSkip()
		return
	}
	c.count.shadow.Started++
	c.wg.Add(1)
	c.mu.Unlock()
	go c.runShadow(key, payload, want, call)
}

// runShadow sends the shadow call under the client's own context (the
// caller has its answer already) and records the comparison.
func (c *Client) runShadow(key *string, body []byte, want string, call prepared) {
	defer c.wg.Done()
	defer func() { <-c.shadowSlots }()
	ctx, cancel := context.WithTimeout(c.base, call.budget+c.slack)
	res, err := c.roundTrip(ctx, http.MethodPost, call.target, call.header, body)
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.count.shadow
	var match bool
	switch {
	case err == nil && res.status == http.StatusOK && res.header.Get("X-Normd-Digest") != "":
		match = res.header.Get("X-Normd-Digest") == want
	case err == nil && judge(res.status, "").contract:
		// normd refuses what the in-app path accepted: the paths disagree.
	default:
		s.NormdFailures++
		return
	}
	s.Compared++
	if match {
		s.Matches++
		return
	}
	s.Mismatches++
	if key == nil {
		return // nothing to sample
	}
	if len(s.MismatchKeys) == maxMismatchKeys {
		copy(s.MismatchKeys, s.MismatchKeys[1:])
		s.MismatchKeys = s.MismatchKeys[:maxMismatchKeys-1]
	}
	s.MismatchKeys = append(s.MismatchKeys, *key)
}

func (c *Client) shadowSkip() {
	c.mu.Lock()
	c.count.shadow.Skipped++
	c.mu.Unlock()
}

// digestOf is X-Normd-Digest's form: sha-256=:<base64 of SHA-256>:.
func digestOf(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

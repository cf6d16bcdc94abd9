package normd

// Reason says why a call was answered in-app. The values are the kit's
// vocabulary and the keys of Stats.FallbackByReason.
type Reason string

// The fallback reasons. Reasons lists them all, once.
const (
	ReasonOverloaded  Reason = "overloaded"   // 429
	ReasonUnavailable Reason = "unavailable"  // 503 not_ready/draining/memory_pressure/…; flags never loaded
	ReasonDisabled    Reason = "disabled"     // flag enabled=false, or 503 disabled
	ReasonDeadline    Reason = "deadline"     // 504
	ReasonServerError Reason = "server_error" // 500, a status outside the contract, a 200 that breaks it
	ReasonConnection  Reason = "connection"   // socket missing/refused, reset, cut or oversized body
	ReasonTimeout     Reason = "timeout"      // no complete answer within deadline + slack
	ReasonBreakerOpen Reason = "breaker_open" // short-circuit, no I/O
	ReasonRollout     Reason = "rollout"      // key outside rollout_percent, no I/O
	ReasonShadow      Reason = "shadow"       // in-app answer, normd called in the background
)

// Reasons is every fallback reason, in the kit's order.
var Reasons = []Reason{
	ReasonOverloaded, ReasonUnavailable, ReasonDisabled, ReasonDeadline, ReasonServerError,
	ReasonConnection, ReasonTimeout, ReasonBreakerOpen, ReasonRollout, ReasonShadow,
}

// Path says who did the work.
type Path string

// The two paths of a call.
const (
	PathNormd Path = "normd"
	PathInApp Path = "inapp"
)

// verdict is what one answer of normd means for the call and the breaker.
type verdict struct {
	// reason is the fallback reason; "" for a 200 or a contract error.
	reason Reason
	// contract: the caller's request or data is wrong (ProblemError).
	contract bool
	// failure counts against the breaker; anything else that reached normd counts as a success.
	failure bool
}

// judge is the fallback table, the one place that maps a status (and a 503's
// problem code) to an outcome. Transport failures are not answers and are
// judged where they happen (connection / timeout, both failures).
func judge(status int, code string) verdict {
	switch status {
	case 200:
		return verdict{}
	case 429:
		return verdict{reason: ReasonOverloaded, failure: true}
	case 503:
		if code == "disabled" {
			// normd is alive and answering; the flag said no.
			return verdict{reason: ReasonDisabled}
		}
		return verdict{reason: ReasonUnavailable, failure: true}
	case 504:
		return verdict{reason: ReasonDeadline, failure: true}
	case 400, 404, 405, 413, 415, 422:
		return verdict{contract: true}
	}
	// 500, or anything the contract does not have: a 401/403/502 from
	// something in front of normd says nothing about the caller's data.
	return verdict{reason: ReasonServerError, failure: true}
}

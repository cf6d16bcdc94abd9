package normd

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// ProblemError is normd's contract error (400, 404, 405, 413, 415, 422): the
// request or the data is wrong, the in-app path would not help, so the caller
// gets the RFC 9457 problem instead of a fallback. Use errors.As to get it.
//
// The same type is the Result.Err of a fallback that normd caused with a
// problem (429, 503, 504, 500).
type ProblemError struct {
	// Status is the HTTP status normd answered.
	Status int
	// Code is the problem's stable code ("schema_violation", "invalid_json",
	// …), or "http_<status>" when the body had none.
	Code   string
	Title  string
	Detail string
	// Errors lists the violations of a 422 schema_violation.
	Errors []Violation
	// Problem is the whole problem document (nil when the body was not a JSON object).
	Problem map[string]any
	// Raw is the response body as received.
	Raw []byte
	// RequestID is normd's X-Request-Id, for finding its log line.
	RequestID string
}

// Violation is one entry of a schema_violation's errors.
type Violation struct {
	InstancePath string `json:"instance_path"`
	SchemaPath   string `json:"schema_path"`
	Message      string `json:"message"`
}

func (e *ProblemError) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	if msg == "" {
		msg = "normd rejected the request"
	}
	return fmt.Sprintf("normd %d %s: %s", e.Status, e.Code, msg)
}

// parseProblem reads a problem body; anything unparsable still gives a
// ProblemError, with the code "http_<status>".
func parseProblem(status int, body []byte, requestID string) *ProblemError {
	e := &ProblemError{Status: status, Raw: body, RequestID: requestID}
	var doc struct {
		Code   string      `json:"code"`
		Title  string      `json:"title"`
		Detail string      `json:"detail"`
		Errors []Violation `json:"errors"`
	}
	if json.Unmarshal(body, &e.Problem) == nil && e.Problem != nil {
		// Fields of the wrong type are left empty rather than failing the parse.
		_ = json.Unmarshal(body, &doc)
	}
	e.Code, e.Title, e.Detail, e.Errors = doc.Code, doc.Title, doc.Detail, doc.Errors
	if e.Code == "" {
		e.Code = "http_" + strconv.Itoa(status)
	}
	return e
}

// UnavailableError is returned when normd was not used (for Reason) and no
// in-app function was configured, so there is nothing to answer with.
type UnavailableError struct {
	Reason Reason
	// Cause is what made the call fall back, if anything did.
	Cause error
}

func (e *UnavailableError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("normd not used (%s: %v) and no in-app function configured", e.Reason, e.Cause)
	}
	return fmt.Sprintf("normd not used (%s) and no in-app function configured", e.Reason)
}

func (e *UnavailableError) Unwrap() error { return e.Cause }

// ErrClosed is returned by Norm after Close.
var ErrClosed = errors.New("normd: client is closed")

// errInvalidArgument marks the caller's bugs (a bad header, a negative
// deadline): returned before anything is sent or counted.
var errInvalidArgument = errors.New("normd: invalid argument")

package normd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"syscall"
	"time"
)

// newTransport builds the one http.Transport of a client: keep-alive
// connections to normd's Unix socket, or to TCP when the socket cannot be
// connected (missing, refused, forbidden) or there is none.
func newTransport(socketPath, tcpAddr string, maxConns int, idle time.Duration, onFailover func()) *http.Transport {
	var d net.Dialer
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		if socketPath != "" {
			conn, err := d.DialContext(ctx, "unix", socketPath)
			if err == nil || tcpAddr == "" || !socketAbsent(err) {
				return conn, err
			}
			onFailover()
		}
		return d.DialContext(ctx, "tcp", tcpAddr)
	}
	return &http.Transport{
		DialContext:         dial,
		MaxConnsPerHost:     maxConns,
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		// Idle connections are closed before normd's --header-read-timeout-ms
		// (10 s) closes them from its side, so a request rarely meets a
		// connection the server is closing.
		IdleConnTimeout: idle,
		// normd's body is compressed on purpose and carries no
		// Content-Encoding; never ask for or undo a transfer compression.
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// socketAbsent: the socket is not there to connect to, so TCP may be.
func socketAbsent(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENOENT, syscall.ECONNREFUSED, syscall.EACCES, syscall.ENOTSOCK, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// response is one complete answer of normd, its body read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errCutBody: normd closed the connection before the body it announced was
// complete. It is a connection failure, never a partial result.
var errCutBody = errors.New("normd: response body cut short")

// errTooLarge: a body past Options.MaxResponseBytes is not read into memory.
var errTooLarge = errors.New("normd: response larger than MaxResponseBytes")

// connInfo is what httptrace tells about the connection an attempt used.
type connInfo struct {
	reused bool
	unix   bool
}

func (ci *connInfo) gotConn(info httptrace.GotConnInfo) {
	ci.reused = info.Reused
	if a := info.Conn.RemoteAddr(); a != nil {
		ci.unix = a.Network() == "unix"
	}
}

// roundTrip is one HTTP exchange with normd under ctx, the body read whole.
// A reused keep-alive connection that normd had closed before answering is
// retried once on a fresh one, inside the same ctx: the work is a pure
// function of the body, so resending is safe.
func (c *Client) roundTrip(ctx context.Context, method, target string, header http.Header, body []byte) (*response, error) {
	for attempt := 0; ; attempt++ {
		var ci connInfo
		tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: ci.gotConn})
		var rd io.Reader
		if body != nil {
			// A *bytes.Reader gives the request a GetBody, so net/http may
			// itself resend when nothing at all was written.
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(tctx, method, target, rd)
		if err != nil {
			return nil, err
		}
		req.Header = header
		res, err := c.transport.RoundTrip(req)
		if err != nil {
			if attempt == 0 && ci.reused && ctx.Err() == nil && staleConn(err) {
				c.mu.Lock()
				c.count.retries++
				c.mu.Unlock()
				continue
			}
			return nil, err
		}
		data, err := readBody(res, c.maxResponseBytes)
		res.Body.Close()
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if ci.unix {
			c.count.byTransport.Unix++
		} else {
			c.count.byTransport.TCP++
		}
		c.mu.Unlock()
		return &response{status: res.StatusCode, header: res.Header, body: data}, nil
	}
}

// staleConn: the errors of a keep-alive connection the server had closed,
// seen before any byte of an answer.
func staleConn(err error) bool {
	// io.ErrUnexpectedEOF is left out: it means part of an answer came.
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		// net/http's errServerClosedIdle is not exported.
		strings.Contains(err.Error(), "server closed idle connection")
}

// readBody reads the whole body: into one buffer of the announced size when
// there is a Content-Length (normd always sends one), else up to max.
func readBody(res *http.Response, max int64) ([]byte, error) {
	if n := res.ContentLength; n >= 0 {
		if n > max {
			// Known too large before a byte of it is read or allocated.
			return nil, fmt.Errorf("%w (Content-Length %d)", errTooLarge, n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(res.Body, buf); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: %v", errCutBody, err)
			}
			return nil, err
		}
		return buf, nil
	}
	buf, err := io.ReadAll(io.LimitReader(res.Body, max+1))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %v", errCutBody, err)
		}
		return nil, err
	}
	if int64(len(buf)) > max {
		return nil, errTooLarge
	}
	return buf, nil
}

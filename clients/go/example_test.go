package normd_test

import (
	"context"
	"errors"
	"expvar"
	"log"

	"normd.dev/go/normd"
)

// inAppNorm stands for the app's existing in-app implementation.
func inAppNorm(body []byte) ([]byte, error) { return body, nil }

// The README's example: wrap the in-app function, publish the stats. Not
// run (no Output comment), only compiled, so the README cannot drift from the API.
func Example() {
	nc, err := normd.New(normd.Options{
		SocketPath: "/run/normd/normd.sock",
		TCPAddr:    "127.0.0.1:8081",
		Profile:    "orders",
		InApp:      func(ctx context.Context, body []byte) ([]byte, error) { return inAppNorm(body) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	expvar.Publish("normd", expvar.Func(nc.ExpvarStats))

	orderID := "ORD-1977867105"
	res, err := nc.Norm(context.Background(), []byte(`{"b":2,"a":1}`), normd.CallOptions{Key: &orderID})
	var problem *normd.ProblemError
	switch {
	case errors.As(err, &problem):
		log.Printf("normd refused the order: %d %s %v", problem.Status, problem.Code, problem.Errors)
	case err != nil:
		log.Printf("in-app path failed: %v", err)
	case res.Path == normd.PathNormd:
		log.Printf("%d canonical bytes, %s-compressed to %d", res.CanonicalBytes, res.Encoding, len(res.Data))
	default:
		log.Printf("in-app (%s)", res.Reason)
	}
}

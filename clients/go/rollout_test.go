package normd

import (
	"fmt"
	"hash/fnv"
	"testing"
)

func TestFNV1a32PublishedVectors(t *testing.T) {
	for key, want := range map[string]uint32{"": 0x811c9dc5, "a": 0xe40c292c, "foobar": 0xbf9cf968} {
		if got := FNV1a32(key); got != want {
			t.Errorf("FNV1a32(%q) = %#x, want %#x", key, got, want)
		}
	}
}

func TestFNV1a32IsHashFNV(t *testing.T) {
	for _, key := range []string{"", "order-1", "commande-é", "注文-9", "e\u0301", "\x00\xff"} {
		h := fnv.New32a()
		h.Write([]byte(key))
		if got, want := FNV1a32(key), h.Sum32(); got != want {
			t.Errorf("FNV1a32(%q) = %d, hash/fnv says %d", key, got, want)
		}
	}
}

func TestRolloutAt25PercentRoutesAQuarterAndOnlyGrows(t *testing.T) {
	in := func(p int) map[string]bool {
		m := map[string]bool{}
		for i := 0; i < 1000; i++ {
			if k := fmt.Sprintf("order-%d", i); Bucket(k) < p {
				m[k] = true
			}
		}
		return m
	}
	at25, at50 := in(25), in(50)
	if n := len(at25); n < 200 || n > 300 {
		t.Errorf("25%% routed %d of 1000 keys", n)
	}
	for k := range at25 {
		if !at50[k] {
			t.Errorf("%s is in at 25%% but not at 50%%", k)
		}
	}
}

func TestRouteWithoutKeyIsRandomButHonoursThePercentage(t *testing.T) {
	f := newFake(t, false)
	c, err := New(Options{SocketPath: f.sock, RolloutPercent: Int(25)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in := 0
	for i := 0; i < 10000; i++ {
		if c.route(nil) == "" {
			in++
		}
	}
	// 10000 draws at p=0.25: a standard deviation of ~43.
	if in < 2200 || in > 2800 {
		t.Errorf("%d of 10000 keyless calls routed at 25%%", in)
	}
	if c.route(strp("key-3")) != "" || c.route(strp("key-18")) != ReasonRollout {
		t.Error("keys key-3 (bucket 0) and key-18 (bucket 50) not routed by their bucket")
	}
}

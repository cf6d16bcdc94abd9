package normd

// Sticky rollout: a key always lands in the same bucket 0..99, so raising
// rollout_percent only ever adds keys to normd and a given order or user does
// not flap between the two paths. Every normd client uses the same hash.

const (
	fnvOffset32 = 0x811c9dc5
	fnvPrime32  = 0x01000193
)

// FNV1a32 is the 32-bit FNV-1a hash of key's UTF-8 bytes (the same as
// hash/fnv.New32a, without its allocation per call).
func FNV1a32(key string) uint32 {
	h := uint32(fnvOffset32)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= fnvPrime32
	}
	return h
}

// Bucket is key's rollout bucket, 0..99.
func Bucket(key string) int {
	return int(FNV1a32(key) % 100)
}

// clampPercent brings a flag or option value into 0..100.
func clampPercent(p int) int {
	if p < 0 {
		return 0
	}
	if p > 100 {
		return 100
	}
	return p
}

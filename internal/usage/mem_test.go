package usage

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/cache"
)

// writeUsers adds the users first..last-1 to key, in batches of 1000 as
// flushes would.
func writeUsers(t testing.TB, m *memStore, key string, first, last int) {
	t.Helper()
	for lo := first; lo < last; lo += 1000 {
		users := make([]string, 0, 1000)
		for i := lo; i < min(lo+1000, last); i++ {
			users = append(users, fmt.Sprintf("firebase-uid-%07d", i))
		}
		b := cache.CounterBatch{Add: map[string][]string{key: users}, TTL: keyTTL}
		if err := m.WriteCounters(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
}

func countUsers(t *testing.T, m *memStore, keys ...string) int64 {
	t.Helper()
	counts, _, err := m.ReadCounters(context.Background(), [][]string{keys}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return counts[0]
}

func within(got int64, want int, tolerance float64) bool {
	return math.Abs(float64(got)-float64(want)) <= tolerance*float64(want)
}

// Without Redis, a day's distinct users are counted in fixed memory: many
// users are counted within 2 % (as a Redis HyperLogLog, about 0.8 %), and
// the key holds 16 KiB (and a 48-byte header) however many there are.
func TestMemStoreManyUsers(t *testing.T) {
	m := newMemStore()
	writeUsers(t, m, "a", 0, 200_000)
	if got := countUsers(t, m, "a"); !within(got, 200_000, 0.02) {
		t.Errorf("users of 200000 = %d, want within 2%%", got)
	}
	if got, limit := m.users["a"].size(), hllM; got > limit {
		t.Errorf("key of 200000 users holds %d bytes, want at most %d", got, limit)
	}
}

// Few users are counted exactly, in less memory than the registers.
func TestMemStoreFewUsersExact(t *testing.T) {
	m := newMemStore()
	for _, n := range []int{1, 2, 3, 100, hllSparseMax} {
		key := fmt.Sprintf("k%d", n)
		writeUsers(t, m, key, 0, n)
		writeUsers(t, m, key, 0, n) // again: counted once
		if got := countUsers(t, m, key); got != int64(n) {
			t.Errorf("users of %d = %d, want exactly %d", n, got, n)
		}
		if got := m.users[key].size(); got > 8*hllSparseMax {
			t.Errorf("key of %d users holds %d bytes, want at most %d", n, got, 8*hllSparseMax)
		}
	}
}

// The users of several keys (the days of a window) are counted once.
func TestMemStoreUnion(t *testing.T) {
	m := newMemStore()
	writeUsers(t, m, "a", 0, 150_000)
	writeUsers(t, m, "b", 100_000, 250_000) // 50000 in both
	writeUsers(t, m, "small", 0, 500)       // sparse, all in a
	writeUsers(t, m, "c", 1_000, 1_200)     // sparse, overlapping small
	tests := []struct {
		keys []string
		want int
		tol  float64
	}{
		{[]string{"a", "b"}, 250_000, 0.02},
		{[]string{"b", "a", "small", "missing"}, 250_000, 0.02},
		{[]string{"small", "c"}, 700, 0},
		{[]string{"small", "c", "small"}, 700, 0},
	}
	for _, tt := range tests {
		if got := countUsers(t, m, tt.keys...); !within(got, tt.want, tt.tol) {
			t.Errorf("users of %q = %d, want %d (within %g%%)", tt.keys, got, tt.want, 100*tt.tol)
		}
	}
}

// Keys expire as in Redis, and their memory goes with them.
func TestMemStoreExpires(t *testing.T) {
	m := newMemStore()
	c := &clock{t: day0}
	m.now = c.now
	writeUsers(t, m, "a", 0, 5_000)
	c.t = c.t.Add(keyTTL + time.Second)
	writeUsers(t, m, "b", 0, 1)
	if got := countUsers(t, m, "a", "b"); got != 1 {
		t.Errorf("users after a's TTL = %d, want 1", got)
	}
	if _, ok := m.users["a"]; ok {
		t.Error("an expired key is still held")
	}
}

// BenchmarkMemStoreWriteCounters is the flush of a batch of 1000 users
// into a day's key and a route's key without Redis, as in Recorder.Flush,
// once the keys are dense.
func BenchmarkMemStoreWriteCounters(b *testing.B) {
	m := newMemStore()
	batches := make([][]string, 64)
	for i := range batches {
		for j := range 1000 {
			batches[i] = append(batches[i], fmt.Sprintf("firebase-uid-%07d", i*1000+j))
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		users := batches[i%len(batches)]
		i++
		batch := cache.CounterBatch{
			Add:  map[string][]string{"users:day": users, "users:route:day": users},
			Incr: map[string]int64{"requests:day": 1000, "requests:route:day": 1000},
			TTL:  keyTTL,
		}
		if err := m.WriteCounters(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
}

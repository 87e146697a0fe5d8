package cache

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestCountersRoundTrip(t *testing.T) {
	rdb := testRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, b := range []CounterBatch{
		{Add: map[string][]string{"{u}:a:1": {"x", "y"}, "{u}:a:2": {"y", "z"}}, Incr: map[string]int64{"r:1": 3}, Set: map[string]string{"last": "100"}, TTL: time.Hour},
		{Add: map[string][]string{"{u}:a:1": {"x"}}, Incr: map[string]int64{"r:1": 2, "r:2": 5}, Set: map[string]string{"last": "200"}, TTL: time.Hour},
	} {
		if err := rdb.WriteCounters(ctx, b); err != nil {
			t.Fatalf("WriteCounters: %v", err)
		}
	}
	counts, values, err := rdb.ReadCounters(ctx,
		[][]string{{"{u}:a:1"}, {"{u}:a:1", "{u}:a:2"}, {"{u}:missing"}},
		[]string{"last", "missing", "r:1", "r:2"})
	if err != nil {
		t.Fatalf("ReadCounters: %v", err)
	}
	if want := []int64{2, 3, 0}; !slices.Equal(counts, want) {
		t.Errorf("distinct = %v, want %v", counts, want)
	}
	if want := []string{"200", "", "5", "5"}; !slices.Equal(values, want) {
		t.Errorf("values = %q, want %q", values, want)
	}
	ttl := rdb.client.PTTL(ctx, rdb.prefix+"{u}:a:2").Val()
	if ttl <= 0 || ttl > time.Hour {
		t.Errorf("PTTL = %v, want (0, 1h]", ttl)
	}
}

func TestCountersWithoutRedis(t *testing.T) {
	var rdb *Redis
	if err := rdb.WriteCounters(context.Background(), CounterBatch{TTL: time.Hour}); !errors.Is(err, ErrRedisUnavailable) {
		t.Errorf("WriteCounters on nil = %v, want ErrRedisUnavailable", err)
	}
	if _, _, err := rdb.ReadCounters(context.Background(), nil, nil); !errors.Is(err, ErrRedisUnavailable) {
		t.Errorf("ReadCounters on nil = %v, want ErrRedisUnavailable", err)
	}
}

// Merge adds a HyperLogLog's elements to a key that already has some, in
// the one round trip of the batch, and leaves no temporary key behind.
func TestCountersMerge(t *testing.T) {
	rdb := testRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A HyperLogLog string as another writer would send it.
	src := rdb.prefix + "{u}:src"
	if err := rdb.client.PFAdd(ctx, src, "x", "y", "z").Err(); err != nil {
		t.Fatal(err)
	}
	hll, err := rdb.client.Get(ctx, src).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	rdb.client.Del(ctx, src)
	if err := rdb.WriteCounters(ctx, CounterBatch{Add: map[string][]string{"{u}:m": {"y", "w"}}, TTL: time.Hour}); err != nil {
		t.Fatalf("WriteCounters(Add): %v", err)
	}
	trips := rdb.trips.Load()
	b := CounterBatch{
		Merge: map[string][]byte{"{u}:m": hll, "{u}:new": hll},
		Incr:  map[string]int64{"{u}:r": 1},
		TTL:   time.Hour,
	}
	if err := rdb.WriteCounters(ctx, b); err != nil {
		t.Fatalf("WriteCounters(Merge): %v", err)
	}
	if got := rdb.trips.Load() - trips; got != 1 {
		t.Errorf("WriteCounters(Merge) took %d round trips, want 1", got)
	}
	counts, _, err := rdb.ReadCounters(ctx, [][]string{{"{u}:m"}, {"{u}:new"}}, nil)
	if err != nil {
		t.Fatalf("ReadCounters: %v", err)
	}
	if want := []int64{4, 3}; !slices.Equal(counts, want) {
		t.Errorf("distinct after Merge = %v, want %v", counts, want)
	}
	if ttl := rdb.client.PTTL(ctx, rdb.prefix+"{u}:new").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("PTTL of a merged key = %v, want (0, 1h]", ttl)
	}
	keys, err := rdb.client.Keys(ctx, rdb.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{rdb.prefix + "{u}:m", rdb.prefix + "{u}:new", rdb.prefix + "{u}:r"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys after Merge = %q, want %q (no temporary key)", keys, want)
	}
}

// A value that is not a HyperLogLog fails the batch, and still leaves no
// temporary key for longer than a minute.
func TestCountersMergeRefused(t *testing.T) {
	rdb := testRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := rdb.WriteCounters(ctx, CounterBatch{Merge: map[string][]byte{"{u}:m": []byte("not a HyperLogLog")}, TTL: time.Hour})
	if err == nil {
		t.Fatal("WriteCounters(Merge of a non-HyperLogLog) = nil, want an error")
	}
	keys, _ := rdb.client.Keys(ctx, rdb.prefix+"*").Result()
	for _, k := range keys {
		if ttl := rdb.client.PTTL(ctx, k).Val(); ttl < 0 || ttl > mergeTempTTL {
			t.Errorf("key %s left with PTTL %v, want at most %v", k, ttl, mergeTempTTL)
		}
	}
}

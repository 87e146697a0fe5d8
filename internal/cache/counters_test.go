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

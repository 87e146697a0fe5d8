package ratelimit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)} }

func TestAllowBurstThenRetryAfter(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 0.5, Burst: 3}, 0, WithClock(c.now))
	for i := range 3 {
		if ok, _ := l.Allow("203.0.113.7"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("203.0.113.7")
	if ok {
		t.Fatal("fourth request within the same instant allowed past a burst of 3")
	}
	// One token every 2 s.
	if wait != 2*time.Second {
		t.Errorf("retry after = %v, want 2s", wait)
	}
	// Another key has its own bucket.
	if ok, _ := l.Allow("198.51.100.1"); !ok {
		t.Error("a different key was limited by the first key's requests")
	}
	// The refused request took nothing: after the advertised wait, one
	// request is allowed again, and only one.
	c.advance(wait)
	if ok, _ := l.Allow("203.0.113.7"); !ok {
		t.Error("request after Retry-After refused")
	}
	if ok, _ := l.Allow("203.0.113.7"); ok {
		t.Error("second request after one refill allowed")
	}
}

func TestRetryAfterRoundsUpToWholeSeconds(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 4, Burst: 1}, 0, WithClock(c.now))
	l.Allow("k")
	ok, wait := l.Allow("k")
	if ok || wait != time.Second {
		t.Errorf("Allow = %v, %v; want false, 1s (250ms rounded up)", ok, wait)
	}
}

func TestDisabledLimiterAllowsEverything(t *testing.T) {
	l := New(Config{}, 0)
	if l != nil {
		t.Fatal("New with rate 0 returned a limiter")
	}
	for range 1000 {
		if ok, _ := l.Allow("k"); !ok {
			t.Fatal("nil limiter refused a request")
		}
	}
}

func TestDefaultBurstIsTheRate(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 2.5}, 0, WithClock(c.now))
	n := 0
	for range 10 {
		if ok, _ := l.Allow("k"); ok {
			n++
		}
	}
	if n != 3 {
		t.Errorf("allowed %d at once, want burst 3 (rate 2.5 rounded up)", n)
	}
}

func TestKeyFloodIsBounded(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 1, Burst: 1}, 100, WithClock(c.now))
	// A limited key stays limited while strangers flood distinct keys,
	// as long as its bucket has not refilled...
	l.Allow("victim-of-limit")
	for i := range 99 {
		l.Allow(fmt.Sprintf("flood-%d", i))
	}
	if ok, _ := l.Allow("victim-of-limit"); ok {
		t.Error("limited key allowed again")
	}
	for i := range 10_000 {
		l.Allow(fmt.Sprintf("more-%d", i))
		if n := l.Len(); n > 100 {
			t.Fatalf("tracking %d keys, bound is 100", n)
		}
	}
	// ...and idle keys are dropped first once they have refilled.
	c.advance(2 * time.Second)
	l.Allow("new")
	if n := l.Len(); n != 1 {
		t.Errorf("after every bucket refilled, %d keys tracked, want 1", n)
	}
}

func TestConcurrentAllowNeverExceedsBurst(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 1, Burst: 50}, 0, WithClock(c.now))
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 200 {
		wg.Go(func() {
			if ok, _ := l.Allow("k"); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("%d of 200 concurrent requests allowed, want exactly the burst 50", allowed)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Rate: -1}, "rate: -1 must not be negative"},
		{Config{Rate: 1, Burst: -2}, "burst: -2 must not be negative"},
		{Config{Burst: 5}, "burst: set without rate"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{Rate: 10, Burst: 20}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(Config{Rate: 1e9, Burst: 1e9}, 0)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow("203.0.113.7")
	}
}

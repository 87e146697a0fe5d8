package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// counter is a loader that counts its calls.
type counter struct {
	calls atomic.Int64
	v     string
	ttl   time.Duration
	err   error
}

func (l *counter) load(context.Context) (string, time.Duration, error) {
	l.calls.Add(1)
	return l.v, l.ttl, l.err
}

// newLocal builds an in-process cache of strings named "test" on clk.
// configWith returns DefaultConfig changed by f.
func configWith(f func(*Config)) Config {
	c := DefaultConfig()
	f(&c)
	return c
}

// redisConfigAt returns DefaultRedisConfig for addr.
func redisConfigAt(addr string) RedisConfig {
	c := DefaultRedisConfig()
	c.Addrs = []string{addr}
	return c
}

// redisConfigWith returns redisConfigAt(addr) changed by f.
func redisConfigWith(addr string, f func(*RedisConfig)) RedisConfig {
	c := redisConfigAt(addr)
	f(&c)
	return c
}

func newLocal(t testing.TB, cfg Config, clk *fakeClock, reg prometheus.Registerer) *Cache[string] {
	t.Helper()
	c, err := New[string](cfg, "test", nil, nil, zaptest.NewLogger(t), reg, WithClock(clk.Now))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGetOrLoadExpiry(t *testing.T) {
	tests := []struct {
		name        string
		giveMaxTTL  time.Duration
		giveNoLocal bool
		giveTTL     time.Duration
		giveAdvance time.Duration
		wantLoads   int64
	}{
		{name: "hit before ttl", giveTTL: 10 * time.Second, giveAdvance: 10*time.Second - time.Nanosecond, wantLoads: 1},
		{name: "reload at ttl", giveTTL: 10 * time.Second, giveAdvance: 10 * time.Second, wantLoads: 2},
		{name: "zero ttl is not cached", giveTTL: 0, wantLoads: 2},
		{name: "negative ttl is not cached", giveTTL: -time.Second, wantLoads: 2},
		{name: "local_max_ttl caps ttl", giveMaxTTL: 5 * time.Second, giveTTL: 10 * time.Second, giveAdvance: 5 * time.Second, wantLoads: 2},
		{name: "local_max_ttl above ttl", giveMaxTTL: time.Minute, giveTTL: 10 * time.Second, giveAdvance: 9 * time.Second, wantLoads: 1},
		{name: "local_max_bytes 0: no in-process tier", giveNoLocal: true, giveTTL: 10 * time.Second, wantLoads: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			c := newLocal(t, configWith(func(c *Config) {
				c.LocalMaxTTL = tt.giveMaxTTL
				if tt.giveNoLocal {
					c.LocalMaxBytes = 0
				}
			}), clk, nil)
			l := &counter{v: "value", ttl: tt.giveTTL}
			ctx := testContext(t)

			for range 2 {
				got, err := c.GetOrLoad(ctx, "k", l.load)
				if err != nil || got != "value" {
					t.Fatalf("GetOrLoad = %q, %v, want %q, nil", got, err, "value")
				}
				clk.Add(tt.giveAdvance)
			}
			if got := l.calls.Load(); got != tt.wantLoads {
				t.Errorf("loads = %d, want %d", got, tt.wantLoads)
			}
		})
	}
}

func TestGetOrLoadErrorIsNotCached(t *testing.T) {
	c := newLocal(t, DefaultConfig(), newFakeClock(), nil)
	wantErr := errors.New("store down")
	l := &counter{err: wantErr, ttl: time.Minute}
	ctx := testContext(t)

	for range 2 {
		if _, err := c.GetOrLoad(ctx, "k", l.load); !errors.Is(err, wantErr) {
			t.Fatalf("GetOrLoad error = %v, want %v", err, wantErr)
		}
	}
	if got := l.calls.Load(); got != 2 {
		t.Errorf("loads = %d, want 2", got)
	}
}

func TestSetLocal(t *testing.T) {
	clk := newFakeClock()
	c := newLocal(t, DefaultConfig(), clk, nil)
	l := &counter{v: "loaded", ttl: time.Minute}
	ctx := testContext(t)

	c.SetLocal("k", "negative", 5*time.Second)
	if got, err := c.GetOrLoad(ctx, "k", l.load); err != nil || got != "negative" {
		t.Errorf("GetOrLoad within ttl = %q, %v, want %q, nil", got, err, "negative")
	}
	clk.Add(5 * time.Second)
	if got, err := c.GetOrLoad(ctx, "k", l.load); err != nil || got != "loaded" {
		t.Errorf("GetOrLoad after ttl = %q, %v, want %q, nil", got, err, "loaded")
	}
	if got := l.calls.Load(); got != 1 {
		t.Errorf("loads = %d, want 1", got)
	}
}

func TestGetAndSet(t *testing.T) {
	c := newLocal(t, DefaultConfig(), newFakeClock(), nil)
	ctx := testContext(t)

	if got, ok := c.Get(ctx, "k"); ok {
		t.Errorf("Get before Set = %q, true, want miss", got)
	}
	if err := c.Set(ctx, "k", "v", time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if got, ok := c.Get(ctx, "k"); !ok || got != "v" {
		t.Errorf("Get = %q, %t, want %q, true", got, ok, "v")
	}
	if err := c.Set(ctx, "zero", "v", 0); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if got, ok := c.Get(ctx, "zero"); ok {
		t.Errorf("Get after Set with ttl 0 = %q, true, want miss", got)
	}
}

func TestInvalidate(t *testing.T) {
	c := newLocal(t, DefaultConfig(), newFakeClock(), nil)
	l := &counter{v: "v", ttl: time.Minute}
	ctx := testContext(t)

	mustGetOrLoad(t, c, "a", l.load)
	mustGetOrLoad(t, c, "b", l.load)
	if err := c.Invalidate(ctx, "a", "b", "never-set"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	mustGetOrLoad(t, c, "a", l.load)
	mustGetOrLoad(t, c, "b", l.load)
	if got := l.calls.Load(); got != 4 {
		t.Errorf("loads = %d, want 4", got)
	}
}

func mustGetOrLoad(t testing.TB, c *Cache[string], key string, load func(context.Context) (string, time.Duration, error)) string {
	t.Helper()
	v, err := c.GetOrLoad(testContext(t), key, load)
	if err != nil {
		t.Fatalf("GetOrLoad(%q): %v", key, err)
	}
	return v
}

// blockingLoader counts its calls and returns only once release is closed
// (or ctx ends).
type blockingLoader struct {
	calls   atomic.Int64
	started chan struct{} // closed by the first call
	release chan struct{}
	v       string
	ttl     time.Duration
	once    sync.Once
}

func newBlockingLoader(v string) *blockingLoader {
	return &blockingLoader{started: make(chan struct{}), release: make(chan struct{}), v: v, ttl: time.Minute}
}

func (l *blockingLoader) load(ctx context.Context) (string, time.Duration, error) {
	l.calls.Add(1)
	l.once.Do(func() { close(l.started) })
	select {
	case <-l.release:
		return l.v, l.ttl, nil
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
}

// joinedAfter sets c's flight hook to close the returned channel once n
// callers have joined a flight in progress.
func joinedAfter[V any](c *Cache[V], n int64) <-chan struct{} {
	done := make(chan struct{})
	var joins atomic.Int64
	c.flights.joined = func() {
		if joins.Add(1) == n {
			close(done)
		}
	}
	return done
}

func TestGetOrLoadSingleFlight(t *testing.T) {
	const n = 64
	c := newLocal(t, DefaultConfig(), newFakeClock(), nil)
	l := newBlockingLoader("v")
	joined := joinedAfter(c, n-1) // every caller but the one loading waits
	go func() {
		<-joined
		close(l.release)
	}()
	ctx := testContext(t)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			got, err := c.GetOrLoad(ctx, "k", l.load)
			if err == nil && got != "v" {
				err = fmt.Errorf("got %q, want %q", got, "v")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("GetOrLoad: %v", err)
		}
	}
	if got := l.calls.Load(); got != 1 {
		t.Errorf("loads = %d, want 1", got)
	}
	if got := testutil.ToFloat64(c.m.localMiss); got != n {
		t.Errorf("local misses = %v, want %d", got, n)
	}
}

func TestGetOrLoadWaiterGivesUp(t *testing.T) {
	c := newLocal(t, DefaultConfig(), newFakeClock(), nil)
	l := newBlockingLoader("v")
	ctx := testContext(t)

	leader := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, "k", l.load)
		leader <- err
	}()
	<-l.started
	waitCtx, cancel := context.WithCancel(ctx)
	joined := joinedAfter(c, 1)
	go func() { <-joined; cancel() }()
	if _, err := c.GetOrLoad(waitCtx, "k", l.load); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter GetOrLoad error = %v, want %v", err, context.Canceled)
	}
	close(l.release)
	if err := <-leader; err != nil {
		t.Errorf("leader GetOrLoad: %v", err)
	}
}

func TestGetOrLoadLeaderCancelDoesNotFailWaiters(t *testing.T) {
	c := newLocal(t, DefaultConfig(), newFakeClock(), nil)
	l := newBlockingLoader("v")
	ctx := testContext(t)

	leaderCtx, cancelLeader := context.WithCancel(ctx)
	leader := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(leaderCtx, "k", l.load)
		leader <- err
	}()
	<-l.started
	joined := joinedAfter(c, 1)
	go func() {
		<-joined
		cancelLeader()
		close(l.release)
	}()
	if got, err := c.GetOrLoad(ctx, "k", l.load); err != nil || got != "v" {
		t.Errorf("waiter GetOrLoad = %q, %v, want %q, nil", got, err, "v")
	}
	if err := <-leader; err != nil {
		t.Errorf("leader GetOrLoad: %v", err)
	}
}

func TestGetOrLoadPanic(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newLocal(t, DefaultConfig(), newFakeClock(), reg)
	joined := joinedAfter(c, 1)
	started := make(chan struct{})
	panicky := func(context.Context) (string, time.Duration, error) {
		close(started)
		<-joined
		panic("loader bug")
	}
	ctx := testContext(t)

	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		c.GetOrLoad(ctx, "k", panicky)
	}()
	<-started
	if _, err := c.GetOrLoad(ctx, "k", panicky); !errors.Is(err, ErrLoadAborted) {
		t.Errorf("waiter GetOrLoad error = %v, want %v", err, ErrLoadAborted)
	}
	if got := <-recovered; got != "loader bug" {
		t.Errorf("leader panicked with %v, want %q", got, "loader bug")
	}
	if got := testutil.ToFloat64(c.m.loadError); got != 1 {
		t.Errorf("load errors = %v, want 1", got)
	}
	// The flight is over: the next caller loads afresh.
	l := &counter{v: "v", ttl: time.Minute}
	if got := mustGetOrLoad(t, c, "k", l.load); got != "v" {
		t.Errorf("GetOrLoad after panic = %q, want %q", got, "v")
	}
}

func TestInvalidateDuringLoad(t *testing.T) {
	tests := []struct {
		name   string
		change func(ctx context.Context, c *Cache[string]) error
	}{
		{name: "invalidate", change: func(ctx context.Context, c *Cache[string]) error { return c.Invalidate(ctx, "k") }},
		{name: "set", change: func(ctx context.Context, c *Cache[string]) error { return c.Set(ctx, "k", "new", time.Minute) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newLocal(t, DefaultConfig(), newFakeClock(), nil)
			l := newBlockingLoader("old")
			ctx := testContext(t)

			done := make(chan string, 1)
			go func() {
				v, _ := c.GetOrLoad(ctx, "k", l.load)
				done <- v
			}()
			<-l.started
			if err := tt.change(ctx, c); err != nil {
				t.Fatalf("change: %v", err)
			}
			close(l.release)
			if got := <-done; got != "old" {
				t.Errorf("GetOrLoad in flight = %q, want %q", got, "old")
			}
			if got, ok := c.Get(ctx, "k"); ok && got == "old" {
				t.Errorf("Get after change = %q, the load that raced it was stored", got)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newLocal(t, DefaultConfig(), newFakeClock(), reg)
	other, err := New[string](DefaultConfig(), "other", nil, nil, nil, reg)
	if err != nil {
		t.Fatalf("New of a second cache on the registry: %v", err)
	}
	t.Cleanup(func() { other.Close() })
	ctx := testContext(t)
	l := &counter{v: "v", ttl: time.Minute}
	mustGetOrLoad(t, c, "k", l.load)
	mustGetOrLoad(t, c, "k", l.load)
	c.GetOrLoad(ctx, "bad", (&counter{err: errors.New("boom")}).load)

	// One entry of key "k" and value "v": the estimate is the entry
	// overhead, 8 bytes for each string and 48 for the item.
	want := `
# HELP cache_evictions_total In-process entries evicted, or not admitted, to keep within cache.local_max_bytes (verify's negative cache: within cache.negative_entries), by cache.
# TYPE cache_evictions_total counter
cache_evictions_total{cache="other"} 0
cache_evictions_total{cache="test"} 0
# HELP cache_loads_total Loads after a miss in every tier, by cache and result (ok, error).
# TYPE cache_loads_total counter
cache_loads_total{cache="other",result="error"} 0
cache_loads_total{cache="other",result="ok"} 0
cache_loads_total{cache="test",result="error"} 1
cache_loads_total{cache="test",result="ok"} 1
# HELP cache_local_bytes Estimated heap held by each cache's in-process entries; the caches share cache.local_max_bytes.
# TYPE cache_local_bytes gauge
cache_local_bytes{cache="other"} 0
cache_local_bytes{cache="test"} 198
# HELP cache_requests_total Cache lookups by cache, tier (local, redis) and result (hit, miss, error, skipped). Redis errors include failed writes; skipped counts lookups not sent to Redis during a failure back-off.
# TYPE cache_requests_total counter
cache_requests_total{cache="other",result="hit",tier="local"} 0
cache_requests_total{cache="other",result="miss",tier="local"} 0
cache_requests_total{cache="test",result="hit",tier="local"} 1
cache_requests_total{cache="test",result="miss",tier="local"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestNewRejects(t *testing.T) {
	rdb, err := OpenRedis(redisConfigAt("127.0.0.1:1"), nil)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { rdb.Close() })
	tests := []struct {
		name      string
		giveCfg   Config
		giveName  string
		giveRedis *Redis
		giveCodec Codec[string]
	}{
		{name: "empty name", giveName: ""},
		{name: "upper case name", giveName: "Tokens"},
		{name: "dash in name", giveName: "user-rows"},
		{name: "leading digit", giveName: "1tokens"},
		{name: "redis without codec", giveName: "tokens", giveRedis: rdb},
		{name: "invalid config", giveCfg: Config{LocalMaxBytes: -1}, giveName: "tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := New(tt.giveCfg, tt.giveName, tt.giveRedis, tt.giveCodec, nil, nil); err == nil {
				c.Close()
				t.Errorf("New(%q) succeeded, want error", tt.giveName)
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	type row struct {
		ID     string
		Claims map[string]any
	}
	give := row{ID: "u1", Claims: map[string]any{"exp": json.Number("1700000000"), "admin": true}}
	var codec Codec[row] = JSON[row]{}
	b, err := codec.Marshal(give)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	got, err := codec.Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", give) {
		t.Errorf("Unmarshal(Marshal(%#v)) = %#v", give, got)
	}
	if _, err := codec.Unmarshal([]byte("{")); err == nil {
		t.Error("Unmarshal of truncated JSON succeeded, want error")
	}
}

package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/internal/breaker"
	"github.com/authgate/authgate/internal/secret"
)

// testRedisConfig returns the configuration of the Redis at TEST_REDIS_URL
// with a key prefix of the test's own, or skips the test.
func testRedisConfig(t testing.TB) RedisConfig {
	t.Helper()
	raw := os.Getenv("TEST_REDIS_URL")
	if raw == "" {
		t.Skip("TEST_REDIS_URL not set; skipping Redis integration test")
	}
	if testing.Short() {
		t.Skip("-short: skipping Redis integration test")
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	c := redisConfigAt(o.Addr)
	c.DB, c.Username, c.Password = o.DB, o.Username, secret.Secret(o.Password)
	c.KeyPrefix = fmt.Sprintf("authgate-test:%s:%d:", name, time.Now().UnixNano())
	return c
}

// testRedis opens the Redis at TEST_REDIS_URL, or skips the test. The keys
// under the test's prefix are deleted when the test ends.
func testRedis(t testing.TB, opts ...Option) *Redis {
	t.Helper()
	return openTestRedis(t, testRedisConfig(t), opts...)
}

func openTestRedis(t testing.TB, cfg RedisConfig, opts ...Option) *Redis {
	t.Helper()
	rdb, err := OpenRedis(cfg, zaptest.NewLogger(t), opts...)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.client.Scan(ctx, 0, rdb.prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.client.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("clean up %s*: %v", rdb.prefix, err)
		}
		rdb.Close()
	})
	return rdb
}

// newShared builds a cache of strings named "test" on rdb and clk.
func newShared(t testing.TB, rdb *Redis, clk *fakeClock) *Cache[string] {
	t.Helper()
	c, err := New[string](DefaultConfig(), "test", rdb, JSON[string]{}, zaptest.NewLogger(t), nil, WithClock(clk.Now))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisSharedBetweenReplicas(t *testing.T) {
	cfg := testRedisConfig(t)
	clk := newFakeClock()
	a := newShared(t, openTestRedis(t, cfg), clk)
	b := newShared(t, openTestRedis(t, cfg), clk)
	la := &counter{v: "from a", ttl: time.Minute}
	lb := &counter{v: "from b", ttl: time.Minute}

	if got := mustGetOrLoad(t, a, "k", la.load); got != "from a" {
		t.Errorf("a.GetOrLoad = %q, want %q", got, "from a")
	}
	if got := mustGetOrLoad(t, b, "k", lb.load); got != "from a" {
		t.Errorf("b.GetOrLoad = %q, want %q (a's value, through Redis)", got, "from a")
	}
	if got := mustGetOrLoad(t, b, "k", lb.load); got != "from a" {
		t.Errorf("b.GetOrLoad again = %q, want %q", got, "from a")
	}
	if la.calls.Load() != 1 || lb.calls.Load() != 0 {
		t.Errorf("loads = %d on a, %d on b, want 1 and 0", la.calls.Load(), lb.calls.Load())
	}
	if got := testutil.ToFloat64(b.m.redisHit); got != 1 {
		t.Errorf("b's redis hits = %v, want 1", got)
	}
	if got := testutil.ToFloat64(b.m.localHit); got != 1 {
		t.Errorf("b's local hits = %v, want 1", got)
	}
}

func TestRedisKeyAndTTL(t *testing.T) {
	cfg := testRedisConfig(t)
	rdb := openTestRedis(t, cfg)
	clk := newFakeClock()
	c := newShared(t, rdb, clk)
	ctx := testContext(t)
	const ttl = 10 * time.Second
	mustGetOrLoad(t, c, "k", (&counter{v: "v", ttl: ttl}).load)

	key := cfg.KeyPrefix + "test:k" // prefix, cache name, key
	got, err := rdb.client.Get(ctx, key).Result()
	if err != nil || got != `"v"` {
		t.Errorf("GET %s = %q, %v, want %q", key, got, err, `"v"`)
	}
	pttl, err := rdb.client.PTTL(ctx, key).Result()
	if err != nil || pttl <= 0 || pttl > ttl {
		t.Errorf("PTTL %s = %v, %v, want in (0, %v]", key, pttl, err, ttl)
	}

	// A replica copies the entry for what remains of its Redis TTL, less
	// the round trip, which takes a second by b's clock.
	if err := rdb.client.PExpire(ctx, key, 3*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	brdb := openTestRedis(t, cfg)
	// Only the lookup (GET and PTTL) takes the second: the pipeline that
	// opens a connection (HELLO, and SELECT for a database other than 0)
	// goes through the hook too and must not move the clock.
	brdb.client.AddHook(&hook{onPipeline: func(cmds []redis.Cmder) {
		for _, cmd := range cmds {
			if cmd.Name() == "pttl" {
				clk.Add(time.Second)
				return
			}
		}
	}})
	b := newShared(t, brdb, clk)
	if _, ok := b.Get(ctx, "k"); !ok {
		t.Fatal("b.Get = miss, want a Redis hit")
	}
	e, ok := b.local.store.GetEntryQuietly(b.local.hash(b.space, "k"))
	if !ok || e.ExpiresAfter() > 2*time.Second {
		t.Errorf("b's local copy expires after %v (present %t), want at most 2s (3s PTTL less 1s round trip)", e.ExpiresAfter(), ok)
	}
}

func TestRedisTTLBelowAMillisecondStaysLocal(t *testing.T) {
	rdb := testRedis(t)
	c := newShared(t, rdb, newFakeClock())
	ctx := testContext(t)
	mustGetOrLoad(t, c, "k", (&counter{v: "v", ttl: 500 * time.Microsecond}).load)
	if n, err := rdb.client.Exists(ctx, c.prefix+"k").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS = %d, %v, want 0", n, err)
	}
	if _, ok := c.getLocal("k"); !ok {
		t.Error("local tier lacks the entry")
	}
}

func TestRedisSetLocalIsNotShared(t *testing.T) {
	rdb := testRedis(t)
	c := newShared(t, rdb, newFakeClock())
	ctx := testContext(t)
	c.SetLocal("k", "negative", time.Minute)
	if n, err := rdb.client.Exists(ctx, c.prefix+"k").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS after SetLocal = %d, %v, want 0", n, err)
	}
	if got, ok := c.Get(ctx, "k"); !ok || got != "negative" {
		t.Errorf("Get = %q, %t, want %q, true", got, ok, "negative")
	}
}

func TestRedisInvalidate(t *testing.T) {
	cfg := testRedisConfig(t)
	clk := newFakeClock()
	a := newShared(t, openTestRedis(t, cfg), clk)
	b := newShared(t, openTestRedis(t, cfg), clk)
	ctx := testContext(t)
	l := &counter{v: "v1", ttl: time.Minute}
	mustGetOrLoad(t, a, "k", l.load)
	mustGetOrLoad(t, b, "k", l.load)

	if err := a.Invalidate(ctx, "k", "other"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	if n, err := a.rdb.client.Exists(ctx, a.prefix+"k").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS after Invalidate = %d, %v, want 0", n, err)
	}
	l.v = "v2"
	if got := mustGetOrLoad(t, a, "k", l.load); got != "v2" {
		t.Errorf("a.GetOrLoad after Invalidate = %q, want %q", got, "v2")
	}
	// Without Redis.Run nothing tells b: it serves its local copy until
	// that expires.
	if got := mustGetOrLoad(t, b, "k", l.load); got != "v1" {
		t.Errorf("b.GetOrLoad after a's Invalidate = %q, want its local %q", got, "v1")
	}
	clk.Add(time.Minute)
	if got := mustGetOrLoad(t, b, "k", l.load); got != "v2" {
		t.Errorf("b.GetOrLoad after its local copy expired = %q, want %q", got, "v2")
	}
}

// hook calls onPipeline with the commands of each pipeline a client sends,
// after Redis answered them.
type hook struct{ onPipeline func(cmds []redis.Cmder) }

func (h *hook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.onPipeline(cmds)
		return err
	}
}

func TestRedisSingleFlight(t *testing.T) {
	const n = 32
	rdb := testRedis(t)
	var gets atomic.Int64 // lookups go to Redis as a pipeline of GET and PTTL
	rdb.client.AddHook(&hook{onPipeline: func(cmds []redis.Cmder) {
		for _, cmd := range cmds {
			if cmd.Name() == "get" {
				gets.Add(1)
			}
		}
	}})
	c := newShared(t, rdb, newFakeClock())
	l := newBlockingLoader("v")
	joined := joinedAfter(c, n-1)
	go func() {
		<-joined
		close(l.release)
	}()
	ctx := testContext(t)

	var wg sync.WaitGroup
	var failed atomic.Int64
	for range n {
		wg.Go(func() {
			if got, err := c.GetOrLoad(ctx, "k", l.load); err != nil || got != "v" {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d GetOrLoad calls failed", failed.Load(), n)
	}
	if l.calls.Load() != 1 || gets.Load() != 1 {
		t.Errorf("loads = %d, Redis GETs = %d, want 1 and 1", l.calls.Load(), gets.Load())
	}
}

// closedAddr returns an address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRedisOutage(t *testing.T) {
	clk := newFakeClock()
	rdb, err := OpenRedis(redisConfigWith(closedAddr(t), func(c *RedisConfig) { c.FailureBackoff, c.FailureBackoffMax = time.Second, 3*time.Second }),
		zaptest.NewLogger(t), WithClock(clk.Now))
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { rdb.Close() })
	c := newShared(t, rdb, clk)
	ctx := testContext(t)
	l := &counter{v: "v", ttl: time.Minute}

	// Each step looks up a new key, then checks how many lookups reached
	// Redis (and failed) and how many skipped it.
	steps := []struct {
		advance     time.Duration
		wantErrors  float64
		wantSkipped float64
	}{
		{0, 1, 0},                 // first failure: back off 1s
		{0, 1, 1},                 // within the back-off
		{time.Second - 1, 1, 2},   // still within
		{1, 2, 2},                 // back-off over: probe, fails, back off 2s
		{time.Second, 2, 3},       // within
		{time.Second, 3, 3},       // probe fails: back off 3s (the max)
		{3*time.Second - 1, 3, 4}, // within
		{1, 4, 4},                 // probe fails: still 3s
		{3 * time.Second, 5, 4},   // probe
		{2 * time.Second, 5, 5},   // within
	}
	for i, s := range steps {
		clk.Add(s.advance)
		key := fmt.Sprint("k", i)
		if got, err := c.GetOrLoad(ctx, key, l.load); err != nil || got != "v" {
			t.Fatalf("step %d: GetOrLoad = %q, %v, want %q, nil", i, got, err, "v")
		}
		if got := testutil.ToFloat64(c.m.redisError); got != s.wantErrors {
			t.Errorf("step %d: redis errors = %v, want %v", i, got, s.wantErrors)
		}
		if got := testutil.ToFloat64(c.m.redisSkipped); got != s.wantSkipped {
			t.Errorf("step %d: redis skipped = %v, want %v", i, got, s.wantSkipped)
		}
	}
	if got := l.calls.Load(); got != int64(len(steps)) {
		t.Errorf("loads = %d, want %d", got, len(steps))
	}
	if err := c.Check(ctx); !errors.Is(err, ErrRedisUnavailable) {
		t.Errorf("Check = %v, want %v", err, ErrRedisUnavailable)
	}
	// The in-process tier still serves what it holds.
	if got, err := c.GetOrLoad(ctx, "k0", l.load); err != nil || got != "v" {
		t.Errorf("GetOrLoad of a cached key = %q, %v, want %q, nil", got, err, "v")
	}
}

func TestRedisClosedClient(t *testing.T) {
	rdb, err := OpenRedis(testRedisConfig(t), zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	c := newShared(t, rdb, newFakeClock())
	ctx := testContext(t)
	if err := rdb.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l := &counter{v: "v", ttl: time.Minute}
	if got, err := c.GetOrLoad(ctx, "k", l.load); err != nil || got != "v" {
		t.Errorf("GetOrLoad = %q, %v, want %q, nil", got, err, "v")
	}
	if err := c.Check(ctx); !errors.Is(err, ErrRedisUnavailable) {
		t.Errorf("Check = %v, want %v", err, ErrRedisUnavailable)
	}
}

// faultProxy forwards TCP connections to a Redis until it is set down; then
// it drops the open connections and refuses new ones.
type faultProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.setDown(true)
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.forward(c) })
	}
}

func (p *faultProxy) forward(c net.Conn) {
	if !p.track(c) {
		return
	}
	u, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(u) {
		c.Close()
		return
	}
	go func() { io.Copy(u, c); u.Close() }()
	io.Copy(c, u)
	c.Close()
}

// track registers c to be closed by setDown, or closes it at once if the
// proxy is down.
func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

func TestRedisOutageAndRecovery(t *testing.T) {
	cfg := testRedisConfig(t)
	proxy := newFaultProxy(t, cfg.Addrs[0])
	cfg.Addrs = []string{proxy.ln.Addr().String()}
	clk := newFakeClock()
	rdb := openTestRedis(t, cfg, WithClock(clk.Now))
	c := newShared(t, rdb, clk)
	ctx := testContext(t)
	l := &counter{v: "v", ttl: time.Minute}

	mustGetOrLoad(t, c, "before", l.load)
	if err := c.Check(ctx); err != nil {
		t.Fatalf("Check while up = %v, want nil", err)
	}

	proxy.setDown(true)
	if got := mustGetOrLoad(t, c, "during", l.load); got != "v" {
		t.Errorf("GetOrLoad while down = %q, want %q", got, "v")
	}
	if err := c.Check(ctx); !errors.Is(err, ErrRedisUnavailable) {
		t.Errorf("Check while down = %v, want %v", err, ErrRedisUnavailable)
	}

	// A health check during the back-off pings Redis: while it is still
	// down the back-off stays as it was, and once it is back the check
	// ends the back-off at once (the clock does not move here).
	if err := c.Check(ctx); !errors.Is(err, ErrRedisUnavailable) {
		t.Errorf("Check while down, within the back-off = %v, want %v", err, ErrRedisUnavailable)
	}
	if got := rdb.br.Backoff(); got != time.Second {
		t.Errorf("back-off after a failed check = %v, want the first 1s, not lengthened", got)
	}
	proxy.setDown(false)
	if err := c.Check(ctx); err != nil {
		t.Errorf("Check within the back-off, Redis back = %v, want nil", err)
	}
	if rdb.br.Open() {
		t.Error("the breaker is still open after a successful check")
	}
	// Redis is used again: "before" was stored while it was up.
	c.invalidateLocal([]string{"before"})
	mustGetOrLoad(t, c, "before", l.load)
	if got := testutil.ToFloat64(c.m.redisHit); got != 1 {
		t.Errorf("redis hits = %v, want 1", got)
	}
	if got := l.calls.Load(); got != 2 {
		t.Errorf("loads = %d, want 2", got)
	}
}

func TestBreaker(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	boom := errors.New("boom")
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	type step struct {
		at        time.Duration // since t0
		op        string        // allow, fail, ok, cancel
		want      bool          // result of allow
		wantState bool          // degraded after the step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "healthy", steps: []step{
			{0, "allow", true, false}, {0, "ok", false, false}, {0, "allow", true, false},
		}},
		{name: "one probe after back-off", steps: []step{
			{0, "fail", false, true},
			{999 * time.Millisecond, "allow", false, true},
			{time.Second, "allow", true, true},  // the probe
			{time.Second, "allow", false, true}, // others wait for it
			{time.Second, "ok", false, false},
			{time.Second, "allow", true, false},
		}},
		{name: "back-off doubles to max and resets", steps: []step{
			{0, "fail", false, true},
			{time.Second, "allow", true, true}, {time.Second, "fail", false, true}, // 2s
			{3*time.Second - 1, "allow", false, true},
			{3 * time.Second, "allow", true, true}, {3 * time.Second, "fail", false, true}, // 3s (max)
			{6*time.Second - 1, "allow", false, true},
			{6 * time.Second, "allow", true, true}, {6 * time.Second, "ok", false, false},
			{6 * time.Second, "fail", false, true}, // 1s again
			{7 * time.Second, "allow", true, true},
		}},
		{name: "late failure does not extend", steps: []step{
			{0, "fail", false, true},
			{500 * time.Millisecond, "fail", false, true},
			{time.Second, "allow", true, true},
		}},
		{name: "canceled probe lets another probe", steps: []step{
			{0, "fail", false, true},
			{time.Second, "allow", true, true}, {time.Second, "cancel", false, true},
			{time.Second, "allow", true, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := breaker.New(time.Second, 3*time.Second)
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				got := false
				switch s.op {
				case "allow":
					got = b.Allow(now)
				case "fail":
					report(ctx, b, now, boom)
				case "ok":
					report(ctx, b, now, redis.Nil)
				case "cancel":
					report(canceled, b, now, context.Canceled)
				}
				if got != s.want || b.Open() != s.wantState {
					t.Errorf("step %d (%s at %v) = %t, degraded %t, want %t, degraded %t", i, s.op, s.at, got, b.Open(), s.want, s.wantState)
				}
			}
		})
	}
}

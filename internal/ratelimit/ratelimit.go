// Package ratelimit limits requests per key (a client IP, an identity, an
// email) with one token bucket per key, kept in process.
//
// Limits are per replica: N replicas behind a load balancer let through up
// to N times the configured rate, which is what a per-instance limit such as
// nginx's limit_req does too. The set of keys is bounded, so a flood of
// distinct keys costs bounded memory; when it is full, idle keys go first.
package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Config is one limit. The zero value is off.
type Config struct {
	// Rate is the sustained number of requests per second allowed per key.
	// 0 turns the limit off.
	Rate float64 `yaml:"rate"`
	// Burst is how many requests a key may make at once after being idle.
	// Default: Rate rounded up, at least 1.
	Burst int `yaml:"burst"`
}

// Enabled reports whether the limit is on.
func (c Config) Enabled() bool { return c.Rate > 0 }

// Validate reports every problem, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate: %v must not be negative", c.Rate))
	}
	if c.Burst < 0 {
		errs = append(errs, fmt.Errorf("burst: %d must not be negative", c.Burst))
	}
	if c.Rate == 0 && c.Burst > 0 {
		errs = append(errs, errors.New("burst: set without rate (a rate of 0 turns the limit off)"))
	}
	return errors.Join(errs...)
}

// DefaultMaxKeys bounds the keys a Limiter tracks when New is given 0.
const DefaultMaxKeys = 100_000

// Limiter limits requests per key. A nil *Limiter allows everything. It is
// safe for concurrent use.
type Limiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	now     func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// Option adjusts a Limiter.
type Option func(*Limiter)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// New returns a limiter for cfg that tracks at most maxKeys keys (0 means
// DefaultMaxKeys), or nil when cfg is off.
func New(cfg Config, maxKeys int, opts ...Option) *Limiter {
	if !cfg.Enabled() {
		return nil
	}
	burst := cfg.Burst
	if burst == 0 {
		burst = max(1, int(cfg.Rate+0.999999))
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	l := &Limiter{
		limit:   rate.Limit(cfg.Rate),
		burst:   burst,
		maxKeys: maxKeys,
		now:     time.Now,
		buckets: make(map[string]*rate.Limiter),
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Allow takes one request from key's bucket. When the bucket is empty it
// returns false and how long until a request would be allowed, rounded up
// to a whole second (at least one), for a Retry-After header.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			l.evict(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	r := b.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, max(time.Second, time.Duration(math.Ceil(wait.Seconds()))*time.Second)
}

// evict makes room for one key: it drops every bucket that has refilled
// (its key is idle and would start afresh anyway) and, when none has, an
// arbitrary quarter of the keys. Called with l.mu held.
func (l *Limiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) <= l.maxKeys*3/4 {
			break
		}
		delete(l.buckets, k)
	}
}

// Len is the number of keys tracked, for tests and metrics.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

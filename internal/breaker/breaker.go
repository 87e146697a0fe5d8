// Package breaker skips a failing dependency (Redis, PostgreSQL) on the
// request path for a back-off that doubles with each failed probe, so that a
// dead dependency costs one timeout per back-off instead of one per request.
//
// The fast path, dependency healthy, is one atomic load. When a back-off has
// ended, exactly one caller is let through as the probe; the others keep
// skipping until it reports with Succeed, Fail or Release.
package breaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// Breaker is safe for concurrent use. The zero value is not usable; build
// one with New.
type Breaker struct {
	initial, max time.Duration

	// until is the end of the current back-off in Unix nanoseconds; zero
	// while healthy.
	until atomic.Int64

	mu      sync.Mutex
	backoff time.Duration // zero while healthy
	probing bool          // one caller is trying the dependency after a back-off
	err     error         // the failure that started or extended the back-off
}

// New returns a closed breaker whose first back-off is initial, doubling up
// to max. An initial of zero never opens: every call tries the dependency.
func New(initial, max time.Duration) *Breaker {
	return &Breaker{initial: initial, max: max}
}

// Allow reports whether the dependency may be tried now.
func (b *Breaker) Allow(now time.Time) bool {
	until := b.until.Load()
	if until == 0 {
		return true
	}
	if now.UnixNano() < until {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.backoff == 0 {
		return true // recovered meanwhile
	}
	if b.probing {
		return false
	}
	b.probing = true
	return true
}

// Open reports whether the dependency is being skipped or probed.
func (b *Breaker) Open() bool { return b.until.Load() != 0 }

// Succeed closes the breaker; it reports whether it was open.
func (b *Breaker) Succeed() bool {
	if b.until.Load() == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.backoff == 0 {
		return false
	}
	b.backoff, b.probing, b.err = 0, false, nil
	b.until.Store(0)
	return true
}

// Fail opens the breaker, or doubles its back-off after a failed probe. It
// returns the back-off and whether the breaker was closed before. A failure
// of a call made before the back-off began changes nothing: the back-off
// already accounts for it.
func (b *Breaker) Fail(now time.Time, err error) (time.Duration, bool) {
	if b.initial <= 0 {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	wasClosed := b.backoff == 0
	switch {
	case wasClosed:
		b.backoff = b.initial
	case b.probing:
		b.backoff = min(2*b.backoff, b.max)
	default:
		return b.backoff, false
	}
	b.probing, b.err = false, err
	b.until.Store(now.Add(b.backoff).UnixNano())
	return b.backoff, wasClosed
}

// Release ends a probe without a verdict (its caller went away), so that
// the next caller may probe.
func (b *Breaker) Release() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// Backoff is the current back-off; zero while closed.
func (b *Breaker) Backoff() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.backoff
}

// LastErr is the failure that opened or extended the back-off; nil while
// closed.
func (b *Breaker) LastErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

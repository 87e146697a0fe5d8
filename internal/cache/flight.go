package cache

import (
	"context"
	"sync"
)

// group collapses concurrent loads of one key. Unlike
// golang.org/x/sync/singleflight, the first caller runs the load on its own
// goroutine, so the loader passed to GetOrLoad does not escape to the heap
// (a hit allocates nothing, even for a closure) and a panic surfaces where it
// happened; the other callers wait on a channel and may give up when their
// context ends.
type group[V any] struct {
	mu sync.Mutex
	m  map[string]*flight[V]

	// joined, when set by a test, is called each time a caller joins a
	// flight that is in progress.
	joined func()
}

// flight is one load in progress. v and err are written before done is
// closed and read after.
type flight[V any] struct {
	done  chan struct{}
	stale bool // guarded by group.mu: key was invalidated or set meanwhile
	v     V
	err   error
}

// join returns the flight for key, starting one if there is none; leader
// is true for the caller that must run it and call finish.
func (g *group[V]) join(key string) (f *flight[V], leader bool) {
	g.mu.Lock()
	if f, ok := g.m[key]; ok {
		g.mu.Unlock()
		if g.joined != nil {
			g.joined()
		}
		return f, false
	}
	f = &flight[V]{done: make(chan struct{})}
	g.m[key] = f
	g.mu.Unlock()
	return f, true
}

// finish hands the result to the waiters and ends the flight.
func (g *group[V]) finish(key string, f *flight[V], v V, err error) {
	f.v, f.err = v, err
	g.mu.Lock()
	if g.m[key] == f {
		delete(g.m, key)
	}
	g.mu.Unlock()
	close(f.done)
}

// forget marks the flight for key, if any, stale, and detaches it so that
// later callers start a fresh load.
func (g *group[V]) forget(key string) {
	g.mu.Lock()
	if f, ok := g.m[key]; ok {
		f.stale = true
		delete(g.m, key)
	}
	g.mu.Unlock()
}

// forgetAll marks every flight stale and detaches it.
func (g *group[V]) forgetAll() {
	g.mu.Lock()
	for k, f := range g.m {
		f.stale = true
		delete(g.m, k)
	}
	g.mu.Unlock()
}

// stale reports whether f's result must not be stored.
func (g *group[V]) stale(f *flight[V]) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return f.stale
}

// wait returns the flight's result, or ctx's error if ctx ends first.
func (f *flight[V]) wait(ctx context.Context) (V, error) {
	select {
	case <-f.done:
		return f.v, f.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

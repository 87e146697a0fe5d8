package cache

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The tests below race lookups that find an entry in the arena, and move
// it to the hot level, against an Invalidate, a Set and a clear of it:
// once those return, no lookup may bring the old value back. Before the
// move was made under the arena's lock, thousands of 20 000 rounds failed.

// raceRounds is enough to have failed reliably (hundreds of the 2 000
// rounds for the rarest of the three races).
const raceRounds = 2000

// An Invalidate that returned must leave no copy behind, whatever lookups
// ran meanwhile.
func TestArenaInvalidateRacesPromotion(t *testing.T) {
	l := newSharedLocal(t, 16<<20)
	c := newOnOpts[string](t, l, "c", prometheus.NewRegistry(), WithBinary[string](stringBinary{}))
	ctx := testContext(t)
	stale := 0
	for i := range raceRounds {
		c.SetLocal("k", "old", time.Hour)
		dropHot(c, "k")
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			for !stop.Load() {
				c.GetLocal("k")
			}
		})
		time.Sleep(time.Microsecond)
		if err := c.Invalidate(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		stop.Store(true)
		wg.Wait()
		if v, ok := c.GetLocal("k"); ok {
			stale++
			if stale == 1 {
				t.Logf("iteration %d: GetLocal after Invalidate = %q", i, v)
			}
			c.Invalidate(ctx, "k")
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d invalidations left a stale copy in the hot level", stale, raceRounds)
	}
}

// A Set that returned must not be undone by a lookup that read the arena
// before it.
func TestArenaSetRacesPromotion(t *testing.T) {
	l := newSharedLocal(t, 16<<20)
	c := newOnOpts[string](t, l, "c", prometheus.NewRegistry(), WithBinary[string](stringBinary{}))
	stale := 0
	for range raceRounds {
		c.SetLocal("k", "old", time.Hour)
		dropHot(c, "k")
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			for !stop.Load() {
				c.GetLocal("k")
			}
		})
		time.Sleep(time.Microsecond)
		c.SetLocal("k", "new", time.Hour)
		stop.Store(true)
		wg.Wait()
		if v, _ := c.GetLocal("k"); v != "new" {
			stale++
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d Sets were undone by a concurrent arena hit", stale, raceRounds)
	}
}

// clearLocal must leave no copy behind either.
func TestArenaClearRacesPromotion(t *testing.T) {
	l := newSharedLocal(t, 16<<20)
	c := newOnOpts[string](t, l, "c", prometheus.NewRegistry(), WithBinary[string](stringBinary{}))
	stale := 0
	for range raceRounds {
		c.SetLocal("k", "old", time.Hour)
		dropHot(c, "k")
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			for !stop.Load() {
				c.GetLocal("k")
			}
		})
		time.Sleep(time.Microsecond)
		c.clearLocal()
		stop.Store(true)
		wg.Wait()
		if _, ok := c.GetLocal("k"); ok {
			stale++
			c.clearLocal()
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d clears left a stale copy", stale, raceRounds)
	}
}

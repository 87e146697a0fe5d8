package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// raceRounds is enough to have failed reliably before the move to the hot
// level was made under the arena's lock: 10 to 60 of 2 000 rounds failed
// for each kind of change.
const raceRounds = 2000

// TestArenaChangesRacePromotion: an Invalidate, a Set or a clear that
// returned is not undone by a lookup that found the old value in the
// arena meanwhile and moved it to the hot level.
func TestArenaChangesRacePromotion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Cache[string])
		want   string // what the hot level holds after the change; "" nothing
	}{
		{"invalidate", func(c *Cache[string]) { _ = c.Invalidate(context.Background(), "k") }, ""},
		{"set", func(c *Cache[string]) { c.SetLocal("k", "new", time.Hour) }, "new"},
		{"clear", func(c *Cache[string]) { c.clearLocal() }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newSharedLocal(t, 16<<20)
			c := newOnOpts[string](t, l, "c", prometheus.NewRegistry(), WithBinary[string](stringBinary{}))
			stale := 0
			for range raceRounds {
				c.SetLocal("k", "old", time.Hour)
				dropHot(c, "k") // in the arena only: the lookups move it
				var stop atomic.Bool
				var wg sync.WaitGroup
				wg.Go(func() {
					for !stop.Load() {
						c.GetLocal("k")
					}
				})
				time.Sleep(time.Microsecond)
				tc.change(c)
				stop.Store(true)
				wg.Wait()
				if v, _ := c.GetLocal("k"); v != tc.want {
					stale++
					if stale == 1 {
						t.Logf("after the %s, GetLocal = %q, want %q", tc.name, v, tc.want)
					}
				}
				_ = c.Invalidate(context.Background(), "k")
			}
			if stale > 0 {
				t.Errorf("%d of %d rounds: the %s was undone by a concurrent hit in the arena", stale, raceRounds, tc.name)
			}
		})
	}
}

package cache

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// dropHot removes key from c's hot level only, as the hot level's own
// bound would, so that the next lookup must go to the arena.
func dropHot[V any](c *Cache[V], key string) {
	c.local.store.Invalidate(c.local.hash(c.space, key))
}

func newArenaCache(t *testing.T, clock *fakeClock) (*Local, *Cache[identity]) {
	t.Helper()
	l, err := NewLocal(4<<20, zaptest.NewLogger(t), WithClock(clock.Now))
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, newOn[identity](t, l, "tokens", prometheus.NewRegistry())
}

// TestArenaServesWhatTheHotLevelDropped: an entry that left the hot level
// is found in the arena, decoded to the value that was set, counted as an
// in-process hit, and back in the hot level for the next lookup.
func TestArenaServesWhatTheHotLevelDropped(t *testing.T) {
	clock := newFakeClock()
	_, c := newArenaCache(t, clock)
	ctx := testContext(t)
	want := newIdentity(7)
	if err := c.Set(ctx, "k", want, time.Hour); err != nil {
		t.Fatal(err)
	}
	dropHot(c, "k")
	if _, ok := c.local.get(c.space, "k"); ok {
		t.Fatal("entry still in the hot level")
	}
	got, ok := c.Get(ctx, "k")
	if !ok {
		t.Fatal("Get missed an entry the arena holds")
	}
	if got.Subject != want.Subject || got.Email != want.Email || !got.ExpiresAt.Equal(want.ExpiresAt) || fmt.Sprint(got.Claims) != fmt.Sprint(want.Claims) {
		t.Errorf("Get = %+v, want %+v", got, want)
	}
	if _, ok := c.local.get(c.space, "k"); !ok {
		t.Error("a hit in the arena did not put the entry back in the hot level")
	}
	if hits := testutil.ToFloat64(c.m.localHit); hits != 1 {
		t.Errorf("in-process hits = %v, want 1", hits)
	}
}

// TestArenaExpiry: an arena entry is served for its time only, and an
// entry promoted from the arena keeps what was left of it.
func TestArenaExpiry(t *testing.T) {
	clock := newFakeClock()
	_, c := newArenaCache(t, clock)
	ctx := testContext(t)
	if err := c.Set(ctx, "k", newIdentity(1), time.Minute); err != nil {
		t.Fatal(err)
	}
	clock.Add(40 * time.Second)
	dropHot(c, "k")
	if _, ok := c.Get(ctx, "k"); !ok {
		t.Fatal("missed an unexpired arena entry")
	}
	clock.Add(21 * time.Second) // past the minute: the promoted copy ends with it
	if _, ok := c.Get(ctx, "k"); ok {
		t.Error("the promoted copy outlived the entry's minute")
	}
	dropHot(c, "k")
	if _, ok := c.Get(ctx, "k"); ok {
		t.Error("the arena served an expired entry")
	}
}

// TestArenaInvalidateAndClear: Invalidate and a cleared tier reach the
// arena, and only for their own cache.
func TestArenaInvalidateAndClear(t *testing.T) {
	clock := newFakeClock()
	l, c := newArenaCache(t, clock)
	other := newOn[identity](t, l, "other", prometheus.NewRegistry())
	ctx := testContext(t)
	for _, k := range []string{"a", "b"} {
		for _, cc := range []*Cache[identity]{c, other} {
			if err := cc.Set(ctx, k, newIdentity(1), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.Invalidate(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	dropHot(c, "a")
	if _, ok := c.Get(ctx, "a"); ok {
		t.Error("the arena served an invalidated entry")
	}
	c.clearLocal()
	dropHot(c, "b")
	if _, ok := c.Get(ctx, "b"); ok {
		t.Error("the arena served an entry of a cleared cache")
	}
	if got := testutil.ToFloat64(c.m.localBytes); got != 0 {
		t.Errorf("cache_local_bytes of the emptied cache = %v, want 0", got)
	}
	for _, k := range []string{"a", "b"} {
		dropHot(other, k)
		if _, ok := other.Get(ctx, k); !ok {
			t.Errorf("the other cache lost %q", k)
		}
	}
	// A new entry after the clear is found again.
	if err := c.Set(ctx, "b", newIdentity(2), time.Hour); err != nil {
		t.Fatal(err)
	}
	dropHot(c, "b")
	if got, ok := c.Get(ctx, "b"); !ok || got.Subject != newIdentity(2).Subject {
		t.Errorf("after the clear, Get(b) = %v, %v; want the new entry", got.Subject, ok)
	}
}

// TestArenaKeyIsCompared: an entry is found by its key, not its hash: a
// lookup of another key under the same hash misses, and a write of it
// replaces the entry.
func TestArenaKeyIsCompared(t *testing.T) {
	a, err := newArena(1<<20, 1<<18, nil)
	if err != nil {
		t.Fatal(err)
	}
	read := func(string) func([]byte, int64) bool {
		return func([]byte, int64) bool { return true }
	}
	const h = 42
	var gen0 atomic.Uint32
	if !a.set(h, 0, 0, 100, "key-one", []byte("v1")) {
		t.Fatal("set refused a small entry")
	}
	if a.get(h, 0, &gen0, 1, "key-two", read("")) {
		t.Error("a lookup of another key with the same hash hit")
	}
	if a.get(h, 1, &gen0, 1, "key-one", read("")) {
		t.Error("a lookup of another space hit")
	}
	var got string
	if !a.get(h, 0, &gen0, 1, "key-one", func(v []byte, _ int64) bool { got = string(v); return true }) || got != "v1" {
		t.Errorf("get = %q, want v1", got)
	}
	a.set(h, 0, 0, 100, "key-two", []byte("v2"))
	if a.get(h, 0, &gen0, 1, "key-one", read("")) {
		t.Error("the replaced key is still found")
	}
	if entries, _ := a.stats(); entries != 1 {
		t.Errorf("entries = %d, want 1", entries)
	}
}

// TestArenaEvictsOldestAndCounts fills a small tier many times over: it
// stays within its budget, the newest entries are found, the oldest are
// not, and the evictions are counted for the cache that lost them.
func TestArenaEvictsOldestAndCounts(t *testing.T) {
	const budget = 1 << 20
	l := newSharedLocal(t, budget)
	reg := prometheus.NewRegistry()
	c := newOn[string](t, l, "c", reg)
	ctx := testContext(t)
	const n = 50_000
	for i := range n {
		if err := c.Set(ctx, fmt.Sprint("key-", i), fmt.Sprint("value-", i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	l.CleanUp()
	if got := l.Bytes(); got > budget {
		t.Errorf("Bytes = %d, want at most %d", got, budget)
	}
	if got := testutil.ToFloat64(c.m.evictions); got == 0 {
		t.Error("cache_evictions_total = 0 after filling the tier many times over")
	}
	newest := fmt.Sprint("key-", n-1)
	dropHot(c, newest)
	if v, ok := c.Get(ctx, newest); !ok || v != fmt.Sprint("value-", n-1) {
		t.Errorf("newest entry: %q, %v", v, ok)
	}
	dropHot(c, "key-0")
	if _, ok := c.Get(ctx, "key-0"); ok {
		t.Error("the oldest entry survived 50 000 newer ones")
	}
	entries, _ := l.arena.stats()
	held := float64(entries) + float64(l.store.EstimatedSize())
	if ev := testutil.ToFloat64(c.m.evictions); ev+held < n*0.99 || ev > n {
		t.Errorf("evictions %v and entries held %v do not add up to the %d written", ev, held, n)
	}
}

// errBadEntry is what brokenBinary's Read returns.
var errBadEntry = errors.New("bad entry")

// brokenBinary writes entries it cannot read back, as an older release's
// encoding would be to a newer one.
type brokenBinary struct{}

func (brokenBinary) Append(b []byte, v string) ([]byte, bool) { return append(b, v...), true }
func (brokenBinary) Read([]byte) (string, error)              { return "", errBadEntry }

// TestArenaUnreadableEntryIsAMiss: an entry that does not decode is a
// miss, not an error or a zero value served.
func TestArenaUnreadableEntryIsAMiss(t *testing.T) {
	l := newSharedLocal(t, 4<<20)
	c := newOnOpts[string](t, l, "c", prometheus.NewRegistry(), WithBinary[string](brokenBinary{}))
	ctx := testContext(t)
	if err := c.Set(ctx, "k", "v", time.Hour); err != nil {
		t.Fatal(err)
	}
	dropHot(c, "k")
	if v, ok := c.Get(ctx, "k"); ok {
		t.Errorf("Get = %q, true; want a miss", v)
	}
}

// TestWithBinaryOfAnotherType is refused when the cache is built.
func TestWithBinaryOfAnotherType(t *testing.T) {
	_, err := New[int](DefaultConfig(), "c", nil, nil, zaptest.NewLogger(t), nil, WithBinary[string](brokenBinary{}))
	if err == nil {
		t.Fatal("New accepted a Binary of another type")
	}
}

// TestArenaConcurrent writes, reads and invalidates from many goroutines
// (run with -race): every hit is the value its key was last given.
func TestArenaConcurrent(t *testing.T) {
	l := newSharedLocal(t, 1<<20)
	c := newOn[string](t, l, "c", prometheus.NewRegistry())
	ctx := testContext(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5_000 {
				k := fmt.Sprint("k", (i*7+g)%3_000)
				switch i % 4 {
				case 0:
					_ = c.Set(ctx, k, "v"+k, time.Hour)
				case 1:
					_ = c.Invalidate(ctx, k)
				default:
					dropHot(c, k)
					if v, ok := c.Get(ctx, k); ok && v != "v"+k {
						t.Errorf("Get(%s) = %q", k, v)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if got := l.Bytes(); got > 1<<20 || got < 0 {
		t.Errorf("Bytes = %d after the run, want 0..budget", got)
	}
}

// TestTimeEncoding: AppendTime and Time give back every time exactly, in
// fewer bytes for whole seconds, and refuse what they did not write.
func TestTimeEncoding(t *testing.T) {
	for _, n := range []int64{0, 1_700_000_000e9, 1_700_000_000e9 + 123, -1, -1e9, -1_500_000_001, 4_102_444_800e9 + 999_999_999} {
		b := AppendTime(nil, n)
		d := NewDecoder(b)
		if got := d.Time(); got != n || d.Err() != nil {
			t.Errorf("Time(AppendTime(%d)) = %d, %v", n, got, d.Err())
		}
		if n%1e9 == 0 && len(b) > 5 {
			t.Errorf("AppendTime(%d) took %d bytes, want at most 5 for whole seconds", n, len(b))
		}
	}
	// Flagged as having nanoseconds, but none: not what AppendTime writes.
	d := NewDecoder([]byte{3, 0})
	if d.Time(); d.Err() == nil {
		t.Error("Time accepted nanoseconds of 0 after the flag")
	}
}

// refusingBinary cannot encode "refused", as a value too large for the
// arena cannot go there.
type refusingBinary struct{ stringBinary }

func (r refusingBinary) Append(b []byte, v string) ([]byte, bool) {
	if v == "refused" {
		return b, false
	}
	return r.stringBinary.Append(b, v)
}

// TestArenaDropsOlderValueItCannotReplace: a Set whose value cannot go to
// the arena leaves no older value there to come back once the hot level
// lets go of the new one.
func TestArenaDropsOlderValueItCannotReplace(t *testing.T) {
	l := newSharedLocal(t, 4<<20)
	c := newOnOpts[string](t, l, "c", prometheus.NewRegistry(), WithBinary[string](refusingBinary{}))
	ctx := testContext(t)
	if err := c.Set(ctx, "k", "old", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", "refused", time.Hour); err != nil {
		t.Fatal(err)
	}
	if v, ok := c.Get(ctx, "k"); !ok || v != "refused" {
		t.Fatalf("Get = %q, %v; want the new value from the hot level", v, ok)
	}
	dropHot(c, "k")
	if v, ok := c.Get(ctx, "k"); ok {
		t.Errorf("after the hot level dropped the new value, Get = %q; want a miss, not the older value", v)
	}
}

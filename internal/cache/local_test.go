package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// identity and userRow have the shape of what verify and federation cache
// (verify.Identity, federation.User), which this package cannot import.
type identity struct {
	Provider, Issuer, Subject, FirebaseUID, Email string
	EmailVerified                                 bool
	Name, Role                                    string
	IssuedAt, ExpiresAt, AuthTime                 time.Time
	Claims                                        map[string]any
}

type userRow struct {
	ID, FirebaseUID, Email, Username, UserType string
	IsActive                                   bool
	TokenBalance                               int64
	FederationStatus                           string
	LastLogin, LastSyncedAt                    time.Time
	SyncAttempts                               int
	LastSyncError                              string
	CreatedAt, UpdatedAt, DeletedAt            time.Time
}

// newIdentity and newUserRow build entry i with strings of their own, as
// decoding a token or a row does.
func newIdentity(i int) identity {
	now := time.Unix(1_700_000_000, 0)
	uid := fmt.Sprintf("uid%025d", i)
	return identity{
		Provider: string([]byte("firebase")), Issuer: fmt.Sprintf("https://securetoken.google.com/project-%d", i%1),
		Subject: uid, FirebaseUID: uid, Email: fmt.Sprintf("user%d@example.com", i), EmailVerified: true,
		Name: fmt.Sprintf("User %d", i), Role: string([]byte("user")),
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), AuthTime: now,
		Claims: map[string]any{"tenant": fmt.Sprintf("t%d", i%97), "level": json.Number(fmt.Sprint(i % 5))},
	}
}

func newUserRow(i int) userRow {
	now := time.Unix(1_700_000_000, 0)
	return userRow{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), FirebaseUID: fmt.Sprintf("uid%025d", i),
		Email: fmt.Sprintf("user%d@example.com", i), Username: fmt.Sprintf("user%d", i), UserType: string([]byte("user")),
		IsActive: true, TokenBalance: int64(i), FederationStatus: string([]byte("active")),
		LastLogin: now, LastSyncedAt: now, CreatedAt: now, UpdatedAt: now,
	}
}

func tokenKey(i int) string {
	sum := sha256.Sum256(fmt.Append(nil, i))
	return hex.EncodeToString(sum[:])
}

func newSharedLocal(t testing.TB, maxBytes int64) *Local {
	t.Helper()
	l, err := NewLocal(maxBytes, zaptest.NewLogger(t), WithClock(newFakeClock().Now))
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// jsonBinary is a Binary for tests: JSON, which is larger than the
// packed encodings verify and federation use, so the budget tests err on
// the side of fewer entries.
type jsonBinary[V any] struct{}

func (jsonBinary[V]) Append(b []byte, v V) ([]byte, bool) {
	j, err := json.Marshal(v)
	return append(b, j...), err == nil
}

func (jsonBinary[V]) Read(b []byte) (V, error) { return JSON[V]{}.Unmarshal(b) }

// newOn builds a cache on l whose entries go to l's arena too, as the
// production caches' do.
func newOn[V any](t testing.TB, l *Local, name string, reg prometheus.Registerer) *Cache[V] {
	t.Helper()
	return newOnOpts[V](t, l, name, reg, WithBinary[V](jsonBinary[V]{}))
}

// newOnOpts builds a cache on l with opts.
func newOnOpts[V any](t testing.TB, l *Local, name string, reg prometheus.Registerer, opts ...Option) *Cache[V] {
	t.Helper()
	c, err := New[V](DefaultConfig(), name, nil, nil, zaptest.NewLogger(t), reg, append(opts, WithLocal(l))...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestLocalHeapBudget fills two caches that share one budget far past it
// with entries shaped like verified tokens and user rows, and checks that
// what they hold is the budget within 10 %, as memory measures it: the
// heap the hot level and the arena's indexes grew by, and the arena's
// rings, outside the heap, as far as they were written.
func TestLocalHeapBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 64 MiB of entries")
	}
	const budget = 32 << 20
	before := heapInUse()
	l := newSharedLocal(t, budget)
	reg := prometheus.NewRegistry()
	tokens := newOn[identity](t, l, "tokens", reg)
	users := newOn[userRow](t, l, "users", reg)
	ctx := testContext(t)
	const n = 300_000 // about 4 times what fits
	for i := range n {
		if err := tokens.Set(ctx, tokenKey(i), newIdentity(i), time.Hour); err != nil {
			t.Fatalf("Set: %v", err)
		}
		if err := users.Set(ctx, "uid:"+fmt.Sprintf("uid%025d", i), newUserRow(i), time.Hour); err != nil {
			t.Fatalf("Set: %v", err)
		}
	}
	l.CleanUp()
	heap := heapInUse() - before
	entries, rings := l.arena.stats()
	grown := heap + int64(rings)
	t.Logf("budget %d B, estimated %d B; heap grew %d B, arena rings %d B: %.3f of the budget; %d hot entries, %d in the arena",
		budget, l.Bytes(), heap, rings, float64(grown)/budget, l.store.EstimatedSize(), entries)
	if grown > budget*11/10 || grown < budget*9/10 {
		t.Errorf("heap and arena grew %d B for a budget of %d B, want within 10 %%", grown, budget)
	}
	if est := l.Bytes(); est > budget*11/10 || est < budget*8/10 {
		t.Errorf("estimated bytes %d for a budget of %d B, want about the budget", est, budget)
	}
	if got := testutil.ToFloat64(tokens.m.evictions) + testutil.ToFloat64(users.m.evictions); got == 0 {
		t.Errorf("cache_evictions_total = 0 after filling 4 times the budget, want more")
	}
	runtime.KeepAlive(tokens)
	runtime.KeepAlive(users)
}

// TestLocalBudgetIsShared checks that a cache can take the room another
// cache filled: the budget is not split into fixed shares.
func TestLocalBudgetIsShared(t *testing.T) {
	const budget = 1 << 20
	l := newSharedLocal(t, budget)
	reg := prometheus.NewRegistry()
	a := newOn[string](t, l, "a", reg)
	b := newOn[string](t, l, "b", reg)
	ctx := testContext(t)
	fill := func(c *Cache[string], n, reads int) {
		for i := range n {
			k := fmt.Sprint(i)
			if err := c.Set(ctx, k, "value", time.Hour); err != nil {
				t.Fatalf("Set: %v", err)
			}
			for range reads {
				c.GetLocal(k)
			}
		}
	}
	// a's entries were written and never read again; b's are read, as
	// hot tokens are, so the admission policy prefers them.
	fill(a, 20_000, 0)
	l.CleanUp()
	fill(b, 20_000, 3)
	l.CleanUp()
	if got := l.Bytes(); got > budget {
		t.Errorf("Bytes = %d, want at most %d", got, budget)
	}
	aBytes, bBytes := testutil.ToFloat64(a.m.localBytes), testutil.ToFloat64(b.m.localBytes)
	if bBytes < budget/4 {
		t.Errorf("cache_local_bytes{cache=b} = %.0f after a filled the budget, want at least a quarter of %d", bBytes, budget)
	}
	if aBytes+bBytes != float64(l.Bytes()) {
		t.Errorf("cache_local_bytes a + b = %.0f + %.0f, want Bytes %d", aBytes, bBytes, l.Bytes())
	}
	if got := testutil.ToFloat64(a.m.evictions); got == 0 {
		t.Errorf("cache_evictions_total{cache=a} = 0, want a's entries evicted for b's")
	}
}

// TestLocalCountBound: a Local built by entries holds at most that many.
func TestLocalCountBound(t *testing.T) {
	const limit = 100
	l, err := NewLocalCount(limit, zaptest.NewLogger(t), WithClock(newFakeClock().Now))
	if err != nil {
		t.Fatalf("NewLocalCount: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	c := newOn[string](t, l, "negative", nil)
	ctx := testContext(t)
	for i := range 10 * limit {
		if err := c.Set(ctx, fmt.Sprint(i), "v", time.Hour); err != nil {
			t.Fatalf("Set: %v", err)
		}
	}
	l.CleanUp()
	if got := l.store.EstimatedSize(); got > limit {
		t.Errorf("entries = %d, want at most %d", got, limit)
	}
}

// TestLocalClearKeepsOtherCaches: a cache that missed invalidations
// empties its own part of a shared tier only.
func TestLocalClearKeepsOtherCaches(t *testing.T) {
	l := newSharedLocal(t, 1<<20)
	a := newOn[string](t, l, "a", nil)
	b := newOn[string](t, l, "b", nil)
	ctx := testContext(t)
	for _, c := range []*Cache[string]{a, b} {
		if err := c.Set(ctx, "k", "v", time.Hour); err != nil {
			t.Fatalf("Set: %v", err)
		}
	}
	a.clearLocal()
	if _, ok := a.GetLocal("k"); ok {
		t.Errorf("a.GetLocal after clear = hit, want miss")
	}
	if got, ok := b.GetLocal("k"); !ok || got != "v" {
		t.Errorf("b.GetLocal after a's clear = %q, %t, want %q, true", got, ok, "v")
	}
}

func TestNewLocalRefusesBounds(t *testing.T) {
	if _, err := NewLocal(64, nil); err == nil {
		t.Errorf("NewLocal(64) = nil error, want local_max_bytes outside its range")
	}
	if _, err := NewLocalCount(0, nil); err == nil {
		t.Errorf("NewLocalCount(0) = nil error, want an error")
	}
}

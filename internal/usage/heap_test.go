package usage

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"go.uber.org/zap"
)

// recorderHeap is the Go heap that a recorder (and its in-memory store)
// holds after recording n distinct users spread over 3 routes, batches
// times, with a flush between batches: what a replica holds between
// flushes in its steady state.
func recorderHeap(tb testing.TB, n, batches int) uint64 {
	tb.Helper()
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("firebase-uid-%07d", i)
	}
	routes := []string{"api", "web", "admin"}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := New(DefaultConfig(), nil, routes, zap.NewNop(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	for b := range batches {
		if b > 0 {
			if err := r.Flush(context.Background()); err != nil {
				tb.Fatal(err)
			}
		}
		for i, u := range users {
			r.Record(firebase, routes[i%len(routes)], u)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(r)
	runtime.KeepAlive(users)
	return after.HeapAlloc - before.HeapAlloc
}

// A recorder holds a sketch per provider and route whatever the number of
// users: 100000 users on 3 routes take well under 1 MiB (a batch of user
// ids took 8.4 MB, and 16.9 MB with the spare batch kept after a flush).
func TestRecorderHeap(t *testing.T) {
	one, two := recorderHeap(t, 100_000, 1), recorderHeap(t, 100_000, 2)
	t.Logf("heap held by a recorder of 100000 users on 3 routes: %d bytes; after a flush and a second batch: %d bytes", one, two)
	const limit = 1 << 20
	if one > limit || two > limit {
		t.Errorf("recorder of 100000 users holds %d, then %d bytes, want at most %d", one, two, limit)
	}
}

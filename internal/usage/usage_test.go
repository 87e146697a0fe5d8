package usage

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/cache/cachetest"
	"github.com/authgate/authgate/verify"
)

const (
	legacy   = verify.ProviderLegacy
	firebase = verify.ProviderFirebase
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var day0 = time.Date(2026, 6, 30, 12, 0, 0, 0, time.UTC)

func testRedis(t *testing.T) *cache.Redis {
	t.Helper()
	cfg, _ := cachetest.Redis(t, "usage")
	rdb, err := cache.OpenRedis(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func newRecorder(t *testing.T, rdb *cache.Redis, c *clock, reg prometheus.Registerer) *Recorder {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxPending = 3
	r, err := New(cfg, rdb, []string{"api", "web"}, zaptest.NewLogger(t), reg, WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// record plays the requests of one day on a recorder and flushes.
func record(t *testing.T, ctx context.Context, r *Recorder, reqs []entry) {
	t.Helper()
	for _, e := range reqs {
		r.Record(e.provider, e.route, e.user)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// Two replicas sharing Redis, over 40 days: windows count distinct users
// across both, requests add up, and days past a window drop out.
func TestStatsShared(t *testing.T) {
	rdb := testRedis(t)
	testStats(t, rdb, true)
}

func TestStatsInMemory(t *testing.T) {
	testStats(t, nil, false)
}

func testStats(t *testing.T, rdb *cache.Redis, shared bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &clock{t: day0.AddDate(0, 0, -40)}
	a := newRecorder(t, rdb, c, prometheus.NewRegistry())
	b := a
	if shared {
		b = newRecorder(t, rdb, c, nil) // a second replica
	}
	// 40 days ago: l-old, then gone from every window.
	record(t, ctx, a, []entry{{legacy, "api", "l-old"}})
	// 20 days ago: l-1 and l-2 (legacy), f-1.
	c.t = day0.AddDate(0, 0, -20)
	record(t, ctx, a, []entry{{legacy, "api", "l-1"}, {legacy, "web", "l-2"}, {firebase, "api", "f-1"}})
	// 3 days ago: l-1 again on the other replica, f-2.
	c.t = day0.AddDate(0, 0, -3)
	record(t, ctx, b, []entry{{legacy, "web", "l-1"}, {firebase, "web", "f-2"}})
	// Today: f-1 three times, f-3; a legacy token whose user is unknown.
	c.t = day0
	record(t, ctx, b, []entry{{firebase, "api", "f-1"}, {firebase, "api", "f-1"}, {firebase, "web", "f-1"}, {firebase, "api", "f-3"}, {legacy, "api", ""}})

	st, err := a.Stats(ctx, true)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	tests := []struct {
		name string
		got  Window
		want Window
	}{
		{"all 1d", st.Windows[0], Window{Days: 1, Legacy: Counts{0, 1}, Firebase: Counts{2, 4}}},
		{"all 7d", st.Windows[1], Window{Days: 7, Legacy: Counts{1, 2}, Firebase: Counts{3, 5}}},
		{"all 30d", st.Windows[2], Window{Days: 30, Legacy: Counts{2, 4}, Firebase: Counts{3, 6}}},
		{"api 30d", st.Routes[0].Windows[2], Window{Days: 30, Legacy: Counts{1, 2}, Firebase: Counts{2, 4}}},
		{"web 7d", st.Routes[1].Windows[1], Window{Days: 7, Legacy: Counts{1, 1}, Firebase: Counts{2, 2}}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
	if st.Shared != shared {
		t.Errorf("Shared = %t, want %t", st.Shared, shared)
	}
	if st.LastLegacySeen == nil || !st.LastLegacySeen.Equal(day0) {
		t.Errorf("LastLegacySeen = %v, want %v", st.LastLegacySeen, day0)
	}
	a.Refresh(ctx)
	if got := testutil.ToFloat64(a.m.users[1][2]); got != 3 {
		t.Errorf("migration_users{provider=firebase,window=30d} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(a.m.lastLegacy); got != float64(day0.Unix()) {
		t.Errorf("legacy_last_seen_timestamp_seconds = %v, want %v", got, day0.Unix())
	}
}

// A full batch drops users, not requests, and counts the drop.
func TestRecordBounded(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: day0}
	r := newRecorder(t, nil, c, nil) // max_pending 3
	var reqs []entry
	for i := range 5 {
		reqs = append(reqs, entry{legacy, "api", fmt.Sprintf("u-%d", i)})
	}
	reqs = append(reqs, entry{legacy, "api", "u-0"}) // already pending: kept
	record(t, ctx, r, reqs)
	st, err := r.Stats(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Windows[0].Legacy, (Counts{Users: 3, Requests: 6}); got != want {
		t.Errorf("1d legacy = %+v, want %+v", got, want)
	}
	if got := testutil.ToFloat64(r.m.dropped); got != 2 {
		t.Errorf("migration_dropped_total = %v, want 2", got)
	}
	if got := testutil.ToFloat64(r.m.requests[0]); got != 6 {
		t.Errorf("migration_requests_total{provider=legacy} = %v, want 6", got)
	}
}

// Run flushes what is left when its context ends.
func TestRunFlushesAtEnd(t *testing.T) {
	c := &clock{t: day0}
	r := newRecorder(t, nil, c, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	r.Record(firebase, "api", "f-1")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	st, err := r.Stats(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Windows[0].Firebase.Users; got != 1 {
		t.Errorf("1d firebase users = %d, want 1", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    Config
		wantErr bool
	}{
		{name: "default", give: DefaultConfig()},
		{name: "zero interval", give: Config{FlushInterval: 0, MaxPending: 1}, wantErr: true},
		{name: "zero max_pending", give: Config{FlushInterval: time.Second}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, want error %t", err, tt.wantErr)
			}
		})
	}
}

// BenchmarkRecord is the cost Record adds to a request: a steady state of
// returning users, as between two flushes.
func BenchmarkRecord(b *testing.B) {
	r, err := New(DefaultConfig(), nil, []string{"api"}, zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	users := make([]string, 1024)
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r.Record(legacy, "api", users[i&1023])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				r.Record(firebase, "api", users[i&1023])
				i++
			}
		})
	})
}

// TestSetRoutes checks that Stats reports on the routes of the last
// SetRoutes, as after a configuration reload.
func TestSetRoutes(t *testing.T) {
	r, err := New(DefaultConfig(), nil, []string{"api"}, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.SetRoutes([]string{"web", "admin"})
	st, err := r.Stats(t.Context(), true)
	if err != nil {
		t.Fatalf("Stats() error = %v", err)
	}
	var got []string
	for _, rs := range st.Routes {
		got = append(got, rs.Route)
	}
	if want := []string{"web", "admin"}; !slices.Equal(got, want) {
		t.Errorf("Stats().Routes = %q, want %q", got, want)
	}
}

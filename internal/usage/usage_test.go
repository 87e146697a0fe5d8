package usage

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
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
	rdb, _, _ := testRedisClient(t)
	return rdb
}

// testRedisClient is testRedis with a plain client to look at what was
// stored, and the key prefix.
func testRedisClient(t *testing.T) (*cache.Redis, *redis.Client, string) {
	t.Helper()
	cfg, c := cachetest.Redis(t, "usage")
	rdb, err := cache.OpenRedis(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb, c, cfg.KeyPrefix
}

// req is one request Record is told of.
type req struct {
	provider verify.Provider
	route    string
	user     string
}

func newRecorder(t *testing.T, rdb *cache.Redis, c *clock, reg prometheus.Registerer) *Recorder {
	t.Helper()
	r, err := New(DefaultConfig(), rdb, []string{"api", "web"}, zaptest.NewLogger(t), reg, WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// record plays the requests of one day on a recorder and flushes.
func record(t *testing.T, ctx context.Context, r *Recorder, reqs []req) {
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
	record(t, ctx, a, []req{{legacy, "api", "l-old"}})
	// 20 days ago: l-1 and l-2 (legacy), f-1.
	c.t = day0.AddDate(0, 0, -20)
	record(t, ctx, a, []req{{legacy, "api", "l-1"}, {legacy, "web", "l-2"}, {firebase, "api", "f-1"}})
	// 3 days ago: l-1 again on the other replica, f-2.
	c.t = day0.AddDate(0, 0, -3)
	record(t, ctx, b, []req{{legacy, "web", "l-1"}, {firebase, "web", "f-2"}})
	// Today: f-1 three times, f-3; a legacy token whose user is unknown.
	c.t = day0
	record(t, ctx, b, []req{{firebase, "api", "f-1"}, {firebase, "api", "f-1"}, {firebase, "web", "f-1"}, {firebase, "api", "f-3"}, {legacy, "api", ""}})

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

// Without Redis, many users are counted within 2 % and few exactly, each
// batch merged into the day's count: what the batch holds does not grow
// with the users (TestRecorderHeap).
func TestRecordManyUsersInMemory(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: day0}
	r := newRecorder(t, nil, c, nil)
	ids := userIDs(0, 120_000)
	for i, chunk := range slices.Collect(slices.Chunk(ids, 30_000)) {
		// Batches overlap: each has 10000 users of the one before.
		if i > 0 {
			chunk = ids[i*30_000-10_000 : (i+1)*30_000]
		}
		var reqs []req
		for j, id := range chunk {
			reqs = append(reqs, req{firebase, []string{"api", "web"}[j%2], id})
		}
		record(t, ctx, r, reqs)
	}
	record(t, ctx, r, []req{{legacy, "api", "l-1"}, {legacy, "web", "l-2"}, {legacy, "api", "l-1"}, {legacy, "api", ""}})
	st, err := r.Stats(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Windows[0].Firebase; !within(got.Users, 120_000, 0.02) || got.Requests != 150_000 {
		t.Errorf("1d firebase = %+v, want 120000 users (within 2%%) and 150000 requests", got)
	}
	if got := st.Routes[0].Windows[0].Firebase.Users; !within(got, 60_000, 0.02) {
		t.Errorf("1d firebase users on api = %d, want 60000 (within 2%%)", got)
	}
	if got, want := st.Windows[0].Legacy, (Counts{Users: 2, Requests: 4}); got != want {
		t.Errorf("1d legacy = %+v, want %+v", got, want)
	}
	if got := testutil.ToFloat64(r.m.requests[1]); got != 150_000 {
		t.Errorf("migration_requests_total{provider=firebase} = %v, want 150000", got)
	}
}

// During a rolling upgrade, replicas of the previous release PFADD user
// ids into the same day keys: a user that one of them and this release
// both saw counts once, exactly as if every replica had PFADDed, and the
// flush is one round trip that leaves no temporary key.
func TestOldReplicaUsersCountOnce(t *testing.T) {
	rdb, client, prefix := testRedisClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &clock{t: day0}
	r := newRecorder(t, rdb, c, nil)
	day := dayOf(day0)
	pfadd := func(key string, ids []string) {
		t.Helper()
		for chunk := range slices.Chunk(ids, 1000) {
			args := make([]any, len(chunk))
			for i, id := range chunk {
				args[i] = id
			}
			if err := client.PFAdd(ctx, prefix+key, args...).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The old replica saw users 0..999 on api, this one 500..1999.
	old, ours := userIDs(0, 1000), userIDs(500, 1500)
	pfadd(usersKey(firebase, "", day), old)
	pfadd(usersKey(firebase, "api", day), old)
	// What Redis would count had every replica PFADDed.
	pfadd("reference", userIDs(0, 2000))
	want := client.PFCount(ctx, prefix+"reference").Val()
	client.Del(ctx, prefix+"reference")

	var reqs []req
	for _, id := range ours {
		reqs = append(reqs, req{firebase, "api", id})
	}
	trips := redisTrips(t, rdb)
	record(t, ctx, r, reqs)
	if got := redisTrips(t, rdb) - trips; got != 1 {
		t.Errorf("Flush took %v round trips, want 1", got)
	}
	st, err := r.Stats(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Windows[0].Firebase.Users; got != want {
		t.Errorf("1d firebase users = %d, want %d (PFCOUNT had all PFADDed)", got, want)
	}
	if got := st.Routes[0].Windows[0].Firebase.Users; got != want {
		t.Errorf("1d firebase users on api = %d, want %d (PFCOUNT had all PFADDed)", got, want)
	}
	if keys := client.Keys(ctx, prefix+"*merge*").Val(); len(keys) > 0 {
		t.Errorf("temporary keys left after the flush: %q", keys)
	}
}

// redisTrips reads authgate_redis_round_trips_total of rdb.
func redisTrips(t *testing.T, rdb *cache.Redis) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(rdb.PoolCollector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "redis_round_trips_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no redis_round_trips_total")
	return 0
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
		{name: "zero interval", give: Config{FlushInterval: 0}, wantErr: true},
		{name: "interval past 10m", give: Config{FlushInterval: 11 * time.Minute}, wantErr: true},
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

package federation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/verify"
)

// testTimeout bounds each integration test.
const testTimeout = 60 * time.Second

// closedPortURL points at a port nothing listens on: every connect is
// refused at once.
const closedPortURL = "postgres://authgate:secret@127.0.0.1:1/platform?sslmode=disable"

// testDatabaseURL returns TEST_DATABASE_URL, or skips the test. A set but
// unreachable database fails the test: CI must not pass by skipping.
func testDatabaseURL(t testing.TB) string {
	t.Helper()
	raw := os.Getenv("TEST_DATABASE_URL")
	if raw == "" {
		t.Skip("TEST_DATABASE_URL not set; skipping PostgreSQL integration test " +
			"(e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	if testing.Short() {
		t.Skip("-short: skipping PostgreSQL integration test")
	}
	return raw
}

// testContext returns a context that ends with the test or after
// testTimeout.
func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testSchema returns a schema name of the test's own and drops the schema
// when the test ends. It fails the test if PostgreSQL does not answer.
func testSchema(t testing.TB, dbURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("TEST_DATABASE_URL is set but PostgreSQL is unreachable: %v", err)
	}
	conn.Close(ctx)
	schema := "fedtest_" + randomHex(t, 8)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// fixture is a migrated Store on a schema of the test's own.
type fixture struct {
	s       *Store
	reg     *prometheus.Registry
	url     string
	schema  string
	clock   *fakeClock
	queries *queryCounter
}

type fixtureOpts struct {
	config func(*Config)
	schema string // share another fixture's schema; "" makes one
	url    string // connect here instead of TEST_DATABASE_URL
	noRdb  bool   // in-process cache only, even with TEST_REDIS_URL
	opts   []Option
}

// newFixture opens and migrates a Store. The cache uses the Redis at
// TEST_REDIS_URL, if set, under a key prefix of the test's own.
func newFixture(t testing.TB, fo fixtureOpts) *fixture {
	t.Helper()
	dbURL := testDatabaseURL(t)
	f := &fixture{
		reg:     prometheus.NewRegistry(),
		url:     dbURL,
		schema:  fo.schema,
		clock:   newFakeClock(),
		queries: &queryCounter{},
	}
	if f.schema == "" {
		f.schema = testSchema(t, dbURL)
	}
	cfg := configtest.Fill(Config{
		Enabled:        true,
		DatabaseURL:    secret.Secret(dbURL),
		Schema:         f.schema,
		OnUnavailable:  PolicyDeny,
		AcquireTimeout: 10 * time.Second,
		QueryTimeout:   10 * time.Second,
	}, DefaultConfig())
	if fo.url != "" {
		cfg.DatabaseURL = secret.Secret(fo.url)
	}
	if fo.config != nil {
		fo.config(&cfg)
	}
	opts := []Option{WithClock(f.clock.Now), withTracer(f.queries)}
	if rc, ok := testRedisConfig(t); ok && !fo.noRdb {
		rdb, err := cache.OpenRedis(rc, zaptest.NewLogger(t))
		if err != nil {
			t.Fatalf("OpenRedis: %v", err)
		}
		t.Cleanup(func() { rdb.Close() })
		opts = append(opts, WithCache(configtest.Fill(cache.Config{Redis: rc}, cache.DefaultConfig()), rdb))
	}
	opts = append(opts, fo.opts...)
	ctx := testContext(t)
	s, err := Open(ctx, cfg, zaptest.NewLogger(t), f.reg, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	f.s = s
	if fo.url == "" {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	return f
}

// testRedisConfig returns the Redis at TEST_REDIS_URL with a key prefix
// of the test's own; ok is false when it is not set.
func testRedisConfig(t testing.TB) (cache.RedisConfig, bool) {
	t.Helper()
	raw := os.Getenv("TEST_REDIS_URL")
	if raw == "" {
		return configtest.Fill(cache.RedisConfig{}, cache.DefaultRedisConfig()), false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("TEST_REDIS_URL: not a redis:// URL")
	}
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil {
			t.Fatalf("TEST_REDIS_URL: database %q is not a number", p)
		}
	}
	pw, _ := u.User.Password()
	return configtest.Fill(cache.RedisConfig{
		Addrs:     []string{u.Host},
		DB:        db,
		Username:  u.User.Username(),
		Password:  secret.Secret(pw),
		KeyPrefix: "authgate-test:" + randomHex(t, 8) + ":",
	}, cache.DefaultRedisConfig()), true
}

// count returns the result of a count query in the fixture's schema.
func (f *fixture) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	ctx := testContext(t)
	var n int
	if err := f.s.pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// withTracer sees every query, for counting them.
func withTracer(tr pgx.QueryTracer) Option { return func(o *options) { o.tracer = tr } }

// withTick drives Run: each value sent is one round of its work. A second
// send returns only once the first round is done.
func withTick(c <-chan time.Time) Option { return func(o *options) { o.tick = c } }

// queryCounter counts the queries sent.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// firebaseID is a verified Firebase identity.
func firebaseID(uid, email string, verified bool) verify.Identity {
	return verify.Identity{
		Provider:      verify.ProviderFirebase,
		Subject:       uid,
		FirebaseUID:   uid,
		Email:         email,
		EmailVerified: verified,
		Name:          "name-" + uid,
	}
}

// legacyID is a verified legacy identity for user id.
func legacyID(id string) verify.Identity {
	return verify.Identity{Provider: verify.ProviderLegacy, Subject: id, Role: "user"}
}

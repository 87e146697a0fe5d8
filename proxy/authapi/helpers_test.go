package authapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/ratelimit"
	"github.com/authgate/authgate/internal/secret"

	"firebase.google.com/go/v4/auth"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/cache/cachetest"
	"github.com/authgate/authgate/internal/firebaseadmin"
	"github.com/authgate/authgate/verify"
)

// emulatorProject is the project the Auth Emulator serves in CI: a demo-
// project needs no credentials and reaches nothing outside the emulator.
const emulatorProject = "demo-authgate"

// testTimeout bounds each integration test.
const testTimeout = 60 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// services are the real dependencies of the integration tests.
type services struct {
	host  string // FIREBASE_AUTH_EMULATOR_HOST
	dbURL string
	admin *auth.Client
}

// testServices returns the Auth Emulator and PostgreSQL from
// FIREBASE_AUTH_EMULATOR_HOST and TEST_DATABASE_URL. It skips the test when
// either is unset (or with -short), and fails it when one is set but does
// not answer: CI must not pass by skipping.
func testServices(t testing.TB) *services {
	t.Helper()
	host, dbURL := os.Getenv("FIREBASE_AUTH_EMULATOR_HOST"), os.Getenv("TEST_DATABASE_URL")
	switch {
	case host == "":
		t.Skip("FIREBASE_AUTH_EMULATOR_HOST not set; skipping auth API integration test " +
			"(start the emulator with scripts/firebase-emulator.sh start and export FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:9099)")
	case dbURL == "":
		t.Skip("TEST_DATABASE_URL not set; skipping auth API integration test " +
			"(e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	case testing.Short():
		t.Skip("-short: skipping auth API integration test")
	}
	ctx := testContext(t)
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", host)
	if err != nil {
		t.Fatalf("FIREBASE_AUTH_EMULATOR_HOST=%s is set but the Auth Emulator does not answer: %v", host, err)
	}
	conn.Close()
	pg, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("TEST_DATABASE_URL is set but PostgreSQL is unreachable: %v", err)
	}
	pg.Close(ctx)
	admin, err := firebaseadmin.AuthClient(ctx, emulatorProject, "")
	if err != nil {
		t.Fatalf("firebase admin client: %v", err)
	}
	return &services{host: host, dbURL: dbURL, admin: admin}
}

// testRedisConfig is the Redis at TEST_REDIS_URL under the test's own key
// prefix (cachetest.Redis).
func testRedisConfig(t testing.TB) cache.RedisConfig {
	t.Helper()
	cfg, _ := cachetest.Redis(t, "authapi")
	return cfg
}

// testSchema makes a schema of the test's own with the user table, plus
// the old service's password_hash and email_verified columns, and drops it
// when the test ends.
func (s *services) testSchema(t testing.TB) string {
	t.Helper()
	schema := "authapi_" + strings.ToLower(rand.Text())
	ctx := testContext(t)
	st, err := federation.Open(ctx, configtest.Fill(federation.Config{Enabled: true, DatabaseURL: secret.Secret(s.dbURL), Schema: schema}, federation.DefaultConfig()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t.Cleanup(func() { s.exec(t, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE") })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s.exec(t, "ALTER TABLE "+pgx.Identifier{schema, "users"}.Sanitize()+" ADD COLUMN password_hash text, ADD COLUMN email_verified boolean")
	return schema
}

// exec runs one statement on a connection of its own.
func (s *services) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// queryRow scans one row of sql into dest.
func (s *services) queryRow(t testing.TB, sql string, args []any, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// newEmail returns an email of the test's own; its Firebase user, if one
// is made, is deleted when the test ends.
func (s *services) newEmail(t testing.TB, local string) string {
	t.Helper()
	email := local + "-" + strings.ToLower(rand.Text()) + "@example.test"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if u, err := s.admin.GetUserByEmail(ctx, email); err == nil {
			_ = s.admin.DeleteUser(ctx, u.UID)
		}
	})
	return email
}

// firebaseUser creates a Firebase user with the email and password, as a
// client signing up with Firebase directly would, and returns its uid.
func (s *services) firebaseUser(t testing.TB, email, password string) string {
	t.Helper()
	u, err := s.admin.CreateUser(testContext(t), (&auth.UserToCreate{}).Email(email).Password(password))
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return u.UID
}

// hasFirebaseUser reports whether the emulator has a user with the email.
func (s *services) hasFirebaseUser(t testing.TB, email string) bool {
	t.Helper()
	_, err := s.admin.GetUserByEmail(testContext(t), email)
	if err != nil && !auth.IsUserNotFound(err) {
		t.Fatalf("GetUserByEmail: %v", err)
	}
	return err == nil
}

// replica is one authgate's auth API and what it is built on.
type replica struct {
	schema   string
	h        *Handler
	verifier *verify.Verifier
	store    *federation.Store
	sessions *IdentityToolkit
	logs     *observer.ObservedLogs
}

type replicaOpts struct {
	quiet  bool // log warnings only, and not to the test (benchmarks)
	schema string
	dbURL  string // "" = the test database
	redis  *cache.RedisConfig
	config func(*Config)
	// degrade serves identities from their token while PostgreSQL is
	// unreachable (on_unavailable allow); the default refuses them.
	degrade bool
}

// newReplica builds the auth API on the emulator and PostgreSQL, with
// revocation checks on, as cmd/authgate wires it. Its logs go to the test
// and to the returned observer.
func (s *services) newReplica(t testing.TB, o replicaOpts) *replica {
	t.Helper()
	ctx := testContext(t)
	core, logs := observer.New(zapcore.DebugLevel)
	log := zaptest.NewLogger(t, zaptest.WrapOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, core) })))
	if o.quiet {
		core, logs = observer.New(zapcore.WarnLevel)
		log = zap.New(core)
	}

	var rdb *cache.Redis
	cacheCfg := configtest.Fill(cache.Config{}, cache.DefaultConfig())
	if o.redis != nil {
		var err error
		if rdb, err = cache.OpenRedis(*o.redis, log); err != nil {
			t.Fatal(err)
		}
		cacheCfg.Redis = *o.redis
		runCtx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = rdb.Run(runCtx) })
		t.Cleanup(func() {
			stop()
			wg.Wait()
			rdb.Close()
		})
	}
	vcfg := verify.DefaultConfig()
	vcfg.Firebase.Enabled, vcfg.Firebase.ProjectID, vcfg.Firebase.Emulator = true, emulatorProject, true
	vcfg.Firebase.Revocation.Enabled = true
	records, err := verify.NewFirebaseRecords(ctx, emulatorProject, "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(vcfg, log, nil, verify.WithCache(cacheCfg, rdb), verify.WithUserRecords(records))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })

	dbURL := o.dbURL
	if dbURL == "" {
		dbURL = s.dbURL
	}
	onUnavailable := federation.PolicyDeny
	if o.degrade {
		onUnavailable = federation.PolicyAllow
	}
	st, err := federation.Open(ctx, configtest.Fill(federation.Config{
		Enabled: true, DatabaseURL: secret.Secret(dbURL), Schema: o.schema, OnUnavailable: onUnavailable,
		AcquireTimeout: 2 * time.Second,
	}, federation.DefaultConfig()), log, nil, federation.WithCache(cacheCfg, rdb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)

	cfg := DefaultConfig()
	cfg.Enabled = true
	cfg.WebAPIKey = "emulator-key"
	cfg.RateLimit = RateLimits{MaxKeys: ratelimit.DefaultMaxKeys}
	cfg.LegacyPasswords = LegacyPasswords{Enabled: true, Column: "password_hash", EmailVerifiedColumn: "email_verified", Format: "bcrypt", Cost: testCost}
	cfg = cfg.WithEmulator(s.host)
	if o.config != nil {
		o.config(&cfg)
	}
	sessions, err := NewIdentityToolkit(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(cfg, Backends{Verifier: v, Users: StoreUsers(st), Accounts: FirebaseAccounts(s.admin), Sessions: sessions}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &replica{schema: o.schema, h: h, verifier: v, store: st, sessions: sessions, logs: logs}
}

// testCost is the bcrypt cost of the test hashes: the lowest, to keep
// tests fast; the benchmark uses the default.
const testCost = 4

// answer is a recorded response.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body.
func (a answer) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", a.body, err)
	}
	return m
}

// code is the error code of an error answer.
func (a answer) code(t testing.TB) string {
	t.Helper()
	e, _ := a.json(t)["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// str returns a string field of the body, by a path of keys.
func (a answer) str(t testing.TB, keys ...string) string {
	t.Helper()
	var v any = a.json(t)
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

// call sends a request to h from 192.0.2.10. body is JSON-encoded unless
// it is a string; token, when set, is sent as a bearer token.
func call(t testing.TB, h http.Handler, method, path string, body any, token string) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequestWithContext(testContext(t), method, path, rd)
	req.RemoteAddr = "192.0.2.10:40000"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

type creds struct {
	Email       string `json:"email"`
	Password    string `json:"password"`
	Username    string `json:"username,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
}

// waitSubscribed waits until n replicas listen for invalidations under the
// key prefix of cfg.
func waitSubscribed(t testing.TB, cfg cache.RedisConfig, n int64) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: cfg.Addrs[0], DB: cfg.DB, Username: cfg.Username, Password: cfg.Password.Value()})
	defer c.Close()
	ch := cfg.KeyPrefix + "invalidate"
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := c.PubSubNumSub(testContext(t), ch).Result()
		if err == nil && got[ch] >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d replicas subscribed to %s within 5s, want %d (%v)", got[ch], ch, n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

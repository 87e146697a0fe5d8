package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify/verifytest"
)

// adminReplicas is two authgate instances on one user table and one
// Redis, with the admin API on and Firebase off, and a connection to the
// table.
type adminReplicas struct {
	a, b  *app
	conn  *pgx.Conn
	users string // the table, schema-qualified
}

// newAdminReplicas migrates a schema of the test's own and wires two
// instances of authgate on it, sharing a Redis key prefix of the test's
// own, with their background loops (the invalidation subscription among
// them) running. It skips without TEST_DATABASE_URL or TEST_REDIS_URL.
func newAdminReplicas(t *testing.T) *adminReplicas {
	t.Helper()
	dbURL := testDatabaseURL(t)
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		t.Skip("TEST_REDIS_URL not set; skipping the Redis integration test")
	}
	ru, err := url.Parse(redisURL)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	db := strings.TrimPrefix(ru.Path, "/")
	if db == "" {
		db = "0"
	}
	schema := testSchema(t, dbURL, "authgate_admin_users")
	path := writeFile(t, "c.yaml", minimalConfig+fmt.Sprintf(`
federation:
  enabled: true
  schema: %s
  max_conns: 20
cache:
  redis:
    addrs: [%q]
    db: %s
    key_prefix: "%s:"
`, schema, ru.Host, db, schema))
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRETS=" + verifytest.Secret, "AUTHGATE_FEDERATION_DATABASE_URL=" + dbURL,
		"AUTHGATE_TRUSTED_PROXIES=127.0.0.1/32", "AUTHGATE_SERVER_ADMIN_API_SECRET=" + adminTestSecret}
	var stderr strings.Builder
	if err := run(t.Context(), []string{"migrate", "--config", path}, env, &strings.Builder{}, &stderr); err != nil {
		t.Fatalf("authgate migrate: %v\n%s", err, stderr.String())
	}
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	r := &adminReplicas{users: pgx.Identifier{schema, "users"}.Sanitize()}
	r.a, r.b = startApp(t, cfg), startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r.conn, err = pgx.Connect(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.conn.Close(context.Background()) })
	return r
}

// startApp builds authgate from cfg and runs its background loops until
// the test ends.
func startApp(t *testing.T, cfg Config) *app {
	t.Helper()
	a, err := newApp(t.Context(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	bg, stop := context.WithCancel(context.Background())
	a.startBackground(bg)
	t.Cleanup(func() { stop(); a.close() })
	return a
}

// user inserts a row with the columns and values of set ("email =
// 'x@example.test', token_balance = 50") and returns its id.
func (r *adminReplicas) user(t *testing.T, cols, vals string) string {
	t.Helper()
	var id string
	q := "INSERT INTO " + r.users + " (" + cols + ") VALUES (" + vals + ") RETURNING id::text"
	if err := r.conn.QueryRow(t.Context(), q).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// balance reads the stored balance of id.
func (r *adminReplicas) balance(t *testing.T, id string) int64 {
	t.Helper()
	var n int64
	if err := r.conn.QueryRow(t.Context(), "SELECT token_balance FROM "+r.users+" WHERE id = $1", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// admin sends an admin API request to the instance a; hdr are header
// name, value pairs.
func admin(a *app, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+adminTestSecret)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	a.admin.ServeHTTP(w, r)
	return w
}

// forwardAuth asks the instance a whether the bearer of tok may pass, as
// a gateway at 127.0.0.1 would.
func forwardAuth(a *app, tok string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "http://svc/auth", nil)
	r.RemoteAddr = "127.0.0.1:1"
	r.Header.Set("X-Forwarded-Uri", "/x")
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	a.handler.ServeHTTP(w, r)
	return w
}

func errorCode(w *httptest.ResponseRecorder) string {
	var b struct{ Error struct{ Code string } }
	_ = json.Unmarshal(w.Body.Bytes(), &b)
	return b.Error.Code
}

// Every row of the users API against the real table, on an instance
// without Firebase.
func TestAdminUsersEndToEnd(t *testing.T) {
	r := newAdminReplicas(t)
	ada := r.user(t, "email, username, token_balance", "'Ada@Example.test', 'ada', 50")
	bob := r.user(t, "email, username, firebase_uid", "'bob@example.test', 'bob', 'fb-bob'")
	failed := r.user(t, "email, federation_status, sync_attempts, last_sync_error",
		"'late@example.test', 'failed', 3, 'retry: firebase user''s email not verified'")
	missing := "0a0a0a0a-0000-4000-8000-00000000000f"
	u := "/admin/users/"
	steps := []struct {
		name      string
		giveMeth  string
		giveURL   string
		giveBody  string
		wantCode  int
		wantError string
		wantBody  []string // parts of the body
	}{
		{name: "get", giveMeth: "GET", giveURL: u + ada, wantCode: 200,
			wantBody: []string{`"id":"` + ada, `"email":"Ada@Example.test"`, `"username":"ada"`, `"userType":"user"`, `"isActive":true`,
				`"tokenBalance":50`, `"federationStatus":"active"`, `"createdAt":`, `"updatedAt":`}},
		{name: "get missing", giveMeth: "GET", giveURL: u + missing, wantCode: 404, wantError: "user_not_found"},
		{name: "get not a uuid", giveMeth: "GET", giveURL: u + "nope", wantCode: 404, wantError: "user_not_found"},
		{name: "find by email, any case", giveMeth: "GET", giveURL: "/admin/users?email=ada@example.TEST", wantCode: 200, wantBody: []string{`"id":"` + ada}},
		{name: "find by uid", giveMeth: "GET", giveURL: "/admin/users?firebase_uid=fb-bob", wantCode: 200, wantBody: []string{`"id":"` + bob}},
		{name: "find by username", giveMeth: "GET", giveURL: "/admin/users?username=bob", wantCode: 200, wantBody: []string{`"id":"` + bob}},
		{name: "find by username, any case", giveMeth: "GET", giveURL: "/admin/users?username=BOB", wantCode: 200, wantBody: []string{`"id":"` + bob}},
		{name: "find by username, missing", giveMeth: "GET", giveURL: "/admin/users?username=nobody", wantCode: 404, wantError: "user_not_found"},
		{name: "find by two", giveMeth: "GET", giveURL: "/admin/users?username=bob&email=bob@example.test", wantCode: 400, wantError: "invalid_request"},

		{name: "patch to a taken username", giveMeth: "PATCH", giveURL: u + ada, giveBody: `{"username": "bob", "userType": "admin"}`,
			wantCode: 409, wantError: "username_taken"},
		{name: "nothing half-written", giveMeth: "GET", giveURL: u + ada, wantCode: 200, wantBody: []string{`"username":"ada"`, `"userType":"user"`}},
		{name: "patch", giveMeth: "PATCH", giveURL: u + ada, giveBody: `{"username": "ada.l", "userType": "admin"}`,
			wantCode: 200, wantBody: []string{`"username":"ada.l"`, `"userType":"admin"`, `"isActive":true`}},
		{name: "patch invalid username", giveMeth: "PATCH", giveURL: u + ada, giveBody: `{"username": "a"}`, wantCode: 400, wantError: "invalid_request"},
		{name: "patch missing", giveMeth: "PATCH", giveURL: u + missing, giveBody: `{"isActive": false}`, wantCode: 404, wantError: "user_not_found"},

		{name: "increment", giveMeth: "POST", giveURL: u + ada + "/token-balance", giveBody: `{"op": "increment", "amount": 5}`,
			wantCode: 200, wantBody: []string{`{"id":"` + ada + `","tokenBalance":55,"previousBalance":50}`}},
		{name: "decrement", giveMeth: "POST", giveURL: u + ada + "/token-balance", giveBody: `{"op": "decrement", "amount": 15}`,
			wantCode: 200, wantBody: []string{`"tokenBalance":40,"previousBalance":55`}},
		{name: "decrement below zero", giveMeth: "POST", giveURL: u + ada + "/token-balance", giveBody: `{"op": "decrement", "amount": 41}`,
			wantCode: 409, wantError: "insufficient_balance"},
		{name: "set", giveMeth: "POST", giveURL: u + ada + "/token-balance", giveBody: `{"op": "set", "amount": 9223372036854775807}`,
			wantCode: 200, wantBody: []string{`"tokenBalance":9223372036854775807,"previousBalance":40`}},
		{name: "increment past the top", giveMeth: "POST", giveURL: u + ada + "/token-balance", giveBody: `{"op": "increment", "amount": 1}`,
			wantCode: 409, wantError: "balance_overflow"},
		{name: "set zero", giveMeth: "POST", giveURL: u + ada + "/token-balance", giveBody: `{"op": "set", "amount": 0}`,
			wantCode: 200, wantBody: []string{`"tokenBalance":0,"previousBalance":9223372036854775807`}},
		{name: "balance of missing", giveMeth: "POST", giveURL: u + missing + "/token-balance", giveBody: `{"op": "set", "amount": 1}`,
			wantCode: 404, wantError: "user_not_found"},

		{name: "soft delete", giveMeth: "DELETE", giveURL: u + bob, wantCode: 200, wantBody: []string{`"deletedAt":`}},
		{name: "deleted: not found by email", giveMeth: "GET", giveURL: "/admin/users?email=bob@example.test", wantCode: 404, wantError: "user_not_found"},
		{name: "deleted: found by id", giveMeth: "GET", giveURL: u + bob, wantCode: 200, wantBody: []string{`"deletedAt":`}},
		{name: "soft delete again", giveMeth: "DELETE", giveURL: u + bob, wantCode: 404, wantError: "user_not_found"},
		{name: "restore", giveMeth: "POST", giveURL: u + bob + "/restore", wantCode: 200, wantBody: []string{`"id":"` + bob}},
		{name: "restored: found by email", giveMeth: "GET", giveURL: "/admin/users?email=bob@example.test", wantCode: 200, wantBody: []string{`"id":"` + bob}},
		{name: "hard delete", giveMeth: "DELETE", giveURL: u + bob + "?hard=true", wantCode: 204},
		{name: "hard deleted", giveMeth: "GET", giveURL: u + bob, wantCode: 404, wantError: "user_not_found"},
		{name: "restore missing", giveMeth: "POST", giveURL: u + bob + "/restore", wantCode: 404, wantError: "user_not_found"},

		{name: "failed federations", giveMeth: "GET", giveURL: "/admin/federation/failed?limit=10", wantCode: 200,
			wantBody: []string{`"id":"` + failed, `"federationStatus":"failed"`, `"syncAttempts":3`, `"lastSyncError":"retry: firebase user's email not verified"`}},
		// Without Firebase: no link, no retry.
		{name: "link without firebase", giveMeth: "POST", giveURL: u + failed + "/link", giveBody: `{"firebase_uid": "fb-x"}`, wantCode: 404, wantError: "not_found"},
		{name: "retry without firebase", giveMeth: "POST", giveURL: u + failed + "/federation/retry", wantCode: 404, wantError: "not_found"},
	}
	for _, st := range steps {
		w := admin(r.a, st.giveMeth, st.giveURL, st.giveBody)
		if w.Code != st.wantCode || errorCode(w) != st.wantError {
			t.Errorf("%s: %s %s = %d %s, want %d %s", st.name, st.giveMeth, st.giveURL, w.Code, w.Body, st.wantCode, st.wantError)
			continue
		}
		for _, part := range st.wantBody {
			if !strings.Contains(w.Body.String(), part) {
				t.Errorf("%s: body %s, want it to contain %s", st.name, w.Body, part)
			}
		}
	}
	// The audit counts, on the instance's /metrics.
	body := admin(r.a, "GET", "/metrics", "").Body.String()
	for _, want := range []string{`authgate_admin_requests_total{action="token_balance",result="conflict"} 2`,
		`authgate_admin_requests_total{action="token_balance",result="ok"} 4`,
		`authgate_admin_requests_total{action="hard_delete_user",result="ok"} 1`,
		`authgate_admin_requests_total{action="delete_user",result="not_found"} 1`,
		`authgate_admin_requests_total{action="update_user",result="invalid"} 1`,
		`authgate_admin_requests_total{action="restore_user",result="replayed"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// 100 concurrent decrements of 1 against a balance of 50: exactly 50
// succeed, 50 are refused, and the balance ends at 0.
func TestAdminTokenBalanceConcurrent(t *testing.T) {
	r := newAdminReplicas(t)
	id := r.user(t, "token_balance", "50")
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 100 {
		wg.Go(func() {
			<-start
			a := r.a
			if i%2 == 1 {
				a = r.b // both replicas charge
			}
			w := admin(a, "POST", "/admin/users/"+id+"/token-balance", `{"op": "decrement", "amount": 1}`)
			mu.Lock()
			codes[w.Code]++
			mu.Unlock()
			if w.Code == http.StatusConflict && errorCode(w) != "insufficient_balance" {
				t.Errorf("409 with %s, want insufficient_balance", w.Body)
			}
		})
	}
	close(start)
	wg.Wait()
	if codes[200] != 50 || codes[409] != 50 || len(codes) != 2 {
		t.Errorf("answers %v, want 50 × 200 and 50 × 409", codes)
	}
	if got := r.balance(t, id); got != 0 {
		t.Errorf("balance %d, want 0", got)
	}
}

// A retry with the same Idempotency-Key gets the first answer and charges
// nothing, on either replica, concurrent or not.
func TestAdminIdempotencyEndToEnd(t *testing.T) {
	r := newAdminReplicas(t)
	id := r.user(t, "token_balance", "50")
	path := "/admin/users/" + id + "/token-balance"
	charge := `{"op": "decrement", "amount": 10}`
	first := admin(r.a, "POST", path, charge, "Idempotency-Key", "order-1")
	if first.Code != 200 || !strings.Contains(first.Body.String(), `"tokenBalance":40`) {
		t.Fatalf("first charge = %d %s", first.Code, first.Body)
	}
	steps := []struct {
		name         string
		giveApp      *app
		giveKey      string
		giveBody     string
		wantCode     int
		wantReplayed bool
		wantBalance  int64
	}{
		{name: "retry", giveApp: r.a, giveKey: "order-1", giveBody: charge, wantCode: 200, wantReplayed: true, wantBalance: 40},
		{name: "retry on the other replica", giveApp: r.b, giveKey: "order-1", giveBody: charge, wantCode: 200, wantReplayed: true, wantBalance: 40},
		{name: "same key, other body", giveApp: r.a, giveKey: "order-1", giveBody: `{"op": "decrement", "amount": 11}`, wantCode: 422, wantBalance: 40},
		{name: "same key, other action", giveApp: r.a, giveKey: "order-1", giveBody: `{"op": "set", "amount": 10}`, wantCode: 422, wantBalance: 40},
		{name: "other key", giveApp: r.b, giveKey: "order-2", giveBody: charge, wantCode: 200, wantBalance: 30},
		{name: "refusal", giveApp: r.a, giveKey: "order-3", giveBody: `{"op": "decrement", "amount": 31}`, wantCode: 409, wantBalance: 30},
		{name: "refusal replayed after a top-up", giveApp: r.a, giveKey: "order-3", giveBody: `{"op": "decrement", "amount": 31}`,
			wantCode: 409, wantReplayed: true, wantBalance: 130},
	}
	for _, st := range steps {
		w := admin(st.giveApp, "POST", path, st.giveBody, "Idempotency-Key", st.giveKey)
		replayed := w.Header().Get("Idempotent-Replayed") == "true"
		if w.Code != st.wantCode || replayed != st.wantReplayed {
			t.Errorf("%s: %d %s, replayed %t; want %d, replayed %t", st.name, w.Code, w.Body, replayed, st.wantCode, st.wantReplayed)
		}
		if st.wantReplayed && st.giveKey == "order-1" && w.Body.String() != first.Body.String() {
			t.Errorf("%s: body %s, want the first answer %s", st.name, w.Body, first.Body)
		}
		if got := r.balance(t, id); got != st.wantBalance {
			t.Errorf("%s: balance %d, want %d", st.name, got, st.wantBalance)
		}
		if st.name == "refusal" {
			if w := admin(r.a, "POST", path, `{"op": "increment", "amount": 100}`); w.Code != 200 {
				t.Fatalf("top-up: %d %s", w.Code, w.Body)
			}
		}
	}
	// Two identical requests at once, one per replica: one charge.
	before := r.balance(t, id)
	var wg sync.WaitGroup
	answers := make([]*httptest.ResponseRecorder, 2)
	for i, a := range []*app{r.a, r.b} {
		wg.Go(func() { answers[i] = admin(a, "POST", path, charge, "Idempotency-Key", "order-4") })
	}
	wg.Wait()
	if answers[0].Code != 200 || answers[0].Body.String() != answers[1].Body.String() {
		t.Errorf("concurrent retries: %d %s and %d %s, want one answer twice", answers[0].Code, answers[0].Body, answers[1].Code, answers[1].Body)
	}
	if got := r.balance(t, id); got != before-10 {
		t.Errorf("balance after two concurrent identical requests %d, want %d (one charge)", got, before-10)
	}
	// Other writes honour it too.
	for i := range 2 {
		w := admin(r.b, "PATCH", "/admin/users/"+id, `{"userType": "pro"}`, "Idempotency-Key", "upgrade-1")
		if w.Code != 200 || (w.Header().Get("Idempotent-Replayed") == "true") != (i == 1) {
			t.Errorf("PATCH #%d with a key: %d, replayed %q", i+1, w.Code, w.Header().Get("Idempotent-Replayed"))
		}
	}
}

// A write through one replica reaches the other's requests at once: both
// cache tiers are invalidated, the other replica's in-process tier through
// the Redis channel. That message is asynchronous, so the other replica
// is given until maxInvalidationDelay to hear it: far below the row's
// cache_ttl (1m), which bounded the staleness before.
func TestAdminWritesReachEveryReplica(t *testing.T) {
	const maxInvalidationDelay = 2 * time.Second
	r := newAdminReplicas(t)
	id := r.user(t, "token_balance", "50")
	tok := verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), verifytest.Claims(id, time.Now()), nil)
	balanceOn := func(a *app) string {
		w := forwardAuth(a, tok)
		if w.Code != 200 {
			return strconv.Itoa(w.Code)
		}
		return w.Header().Get("X-User-Token-Balance")
	}
	// Until a replica's subscription is up, a change may not reach it; a
	// change awaited on each shows that both are.
	for i, p := range [][2]*app{{r.a, r.b}, {r.b, r.a}} {
		from, to := p[0], p[1]
		balanceOn(to)
		admin(from, "POST", "/admin/users/"+id+"/token-balance", `{"op": "increment", "amount": 1}`)
		want := strconv.Itoa(51 + i)
		pollUntil(t, 10*time.Second, "invalidations reach the other replica", func() bool { return balanceOn(to) == want })
	}

	steps := []struct {
		name     string
		giveFrom *app
		giveReq  [3]string // method, path after the user, body
		wantOn   *app
		want     string // the balance, or the status when refused
	}{
		{name: "charge on a, seen on b", giveFrom: r.a, giveReq: [3]string{"POST", "/token-balance", `{"op": "decrement", "amount": 12}`}, wantOn: r.b, want: "40"},
		{name: "top-up on b, seen on a", giveFrom: r.b, giveReq: [3]string{"POST", "/token-balance", `{"op": "set", "amount": 7}`}, wantOn: r.a, want: "7"},
		{name: "deactivated on a, refused on b", giveFrom: r.a, giveReq: [3]string{"PATCH", "", `{"isActive": false}`}, wantOn: r.b, want: "403"},
		{name: "reactivated on b, served on a", giveFrom: r.b, giveReq: [3]string{"PATCH", "", `{"isActive": true}`}, wantOn: r.a, want: "7"},
		{name: "deleted on a, refused on b", giveFrom: r.a, giveReq: [3]string{"DELETE", "", ""}, wantOn: r.b, want: "403"},
		{name: "restored on b, served on a", giveFrom: r.b, giveReq: [3]string{"POST", "/restore", ""}, wantOn: r.a, want: "7"},
	}
	var slowest time.Duration
	for _, st := range steps {
		// Both replicas hold the row in their in-process tier first.
		before := balanceOn(r.a)
		if got := balanceOn(r.b); got != before {
			t.Fatalf("%s: the replicas disagree before the write: %s and %s", st.name, before, got)
		}
		if w := admin(st.giveFrom, st.giveReq[0], "/admin/users/"+id+st.giveReq[1], st.giveReq[2]); w.Code != 200 {
			t.Fatalf("%s: admin write = %d %s", st.name, w.Code, w.Body)
		}
		start := time.Now()
		got := balanceOn(st.wantOn)
		for got != st.want && time.Since(start) < maxInvalidationDelay {
			time.Sleep(time.Millisecond)
			got = balanceOn(st.wantOn)
		}
		slowest = max(slowest, time.Since(start))
		if got != st.want {
			t.Errorf("%s: requests after %s = %s, want %s", st.name, maxInvalidationDelay, got, st.want)
		}
	}
	t.Logf("slowest invalidation to reach the other replica: %s", slowest)
}

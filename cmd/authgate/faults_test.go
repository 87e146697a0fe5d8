//go:build faults

package main

// The fault suite (issue 7): the built authgate under concurrent load while
// one dependency fails and comes back: Redis killed and frozen, PostgreSQL
// stopped and started, the key endpoint failing, hanging and serving
// garbage, and SIGTERM. Each test logs what the load saw (requests sent and
// failed during the fault, latency, time to recover). Run with:
//
//	TEST_REQUIRE_FAULTS=1 go test -race -tags faults -run Fault -count=1 ./cmd/authgate/

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"github.com/authgate/authgate/verify/verifytest"
)

// faultWorkers is the load's concurrency: enough to keep requests in flight
// through every transition, few enough for two shared cores.
const faultWorkers = 16

// faultMaxLatency bounds every request of the Redis and key endpoint
// faults: their timeouts (Redis 500ms reads, 300ms key fetches) keep
// authgate far below it; the rest is slack for a loaded machine.
const faultMaxLatency = 2 * time.Second

// frozenMaxLatency bounds a request while Redis is frozen (SIGSTOP), with
// cache.redis.read_timeout at its default 500ms: read_timeout bounds a
// whole lookup, retries included, and the first failure opens the breaker
// for every cache, so a request meets at most one timed-out lookup. The
// rest is slack for a loaded machine. (Before the fix this suite found, a
// lookup waited about four times read_timeout.)
const frozenMaxLatency = 500*time.Millisecond + 700*time.Millisecond

// readyMaxLatency bounds /readyz: server.admin.check_timeout (2s by
// default) bounds each check, plus slack; the Kubernetes examples give the
// probe 3s.
const readyMaxLatency = 2*time.Second + 500*time.Millisecond

// forwardAuthRequest is a forward-auth subrequest for /api/x from a
// trusted gateway, carrying tok.
func forwardAuthRequest(public, tok string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://"+public+"/auth", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Uri", "/api/x")
	return req
}

// legacyTokens signs n legacy HS256 tokens for the subjects prefix0 ...
func legacyTokens(t *testing.T, prefix string, n int) []string {
	t.Helper()
	now := time.Now()
	toks := make([]string, n)
	for i := range toks {
		toks[i] = verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), verifytest.Claims(fmt.Sprintf("%s%d", prefix, i), now), nil)
	}
	return toks
}

// sleepFor lets the load run through a phase of the fault.
func sleepFor(d time.Duration) { time.Sleep(d) }

// logFailures logs up to five failed results with what is known of them.
func logFailures(t *testing.T, what string, rs []loadResult, ok func(loadResult) bool, origin time.Time) int {
	t.Helper()
	n := 0
	for _, r := range rs {
		if ok(r) {
			continue
		}
		n++
		if n <= 5 {
			t.Logf("%s: %s worker %d started %s, wrote %s, took %s, reused %t: status %d, %v",
				what, r.tag, r.worker, r.start.Sub(origin).Round(time.Millisecond), offset(r.wrote, origin),
				r.latency().Round(time.Millisecond), r.reused, r.status, r.err)
		}
	}
	return n
}

func offset(at, origin time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Sub(origin).Round(100 * time.Microsecond).String()
}

// TestFaultRedisRestart kills the Redis tier under load and starts it again
// on the same port, then freezes it (SIGSTOP) and thaws it: no request may
// fail or wait past the bound, and once Redis is back the token cache uses
// it again.
func TestFaultRedisRestart(t *testing.T) {
	rds := startRedis(t)
	// local_max_ttl keeps entries in process for 10ms only, so that nearly
	// every request goes to the Redis tier.
	ag := startAuthgate(t, fmt.Sprintf(`
server:
  public: {addr: "127.0.0.1:0"}
  admin: {addr: "localhost:0"}
  shutdown_grace: 5s
log: {level: info, format: json, access_log: false}
upstream: ""
trusted_proxies: ["127.0.0.1/32"]
routes:
  - name: default
    path: /
verify:
  legacy:
    enabled: true
    issuer: "https://auth.example.test"
    audience: platform
    secret_files: [%q]
cache:
  local_max_ttl: 10ms
  redis:
    addrs: [%q]
    key_prefix: "authgate-faults:"
    failure_backoff: 200ms
    failure_backoff_max: 1s
`, writeTestSecret(t), rds.Addr))

	toks := legacyTokens(t, "redis-user-", 256)
	var seq atomic.Int64
	load := startLoad(t, loadSpec{
		workers: faultWorkers, maxDuration: time.Minute, timeout: 10 * time.Second, pace: 10 * time.Millisecond,
		next: func(int) (*http.Request, string) {
			return forwardAuthRequest(ag.public, toks[seq.Add(1)%int64(len(toks))]), "token"
		},
	})
	redis := func(result string) float64 {
		return mustScrape(t, ag.admin, "authgate_cache_requests_total", map[string]string{"cache": "tokens", "tier": "redis", "result": result})
	}
	// recovered waits until the token cache hits in Redis again.
	recovered := func(what string, since time.Time) time.Duration {
		t.Helper()
		hits := redis("hit")
		pollUntil(t, 10*time.Second, what, func() bool { return redis("hit") > hits })
		return time.Since(since)
	}

	begin := time.Now()
	sleepFor(time.Second)
	if hits := redis("hit"); hits == 0 {
		t.Fatalf("no Redis hit after a second of load: the test does not exercise the Redis tier")
	}
	failedBefore := redis("error") + redis("skipped")

	killAt := time.Now()
	rds.kill()
	sleepFor(2 * time.Second)
	killedReady := readiness(t, ag.admin)
	bypassed := redis("error") + redis("skipped") - failedBefore
	restartAt := time.Now()
	rds.start()
	upAt := time.Now()
	killRecovery := recovered("Redis hits after the restart", upAt)
	keys := rds.dbsize()
	sleepFor(time.Second)

	failedBefore = redis("error") + redis("skipped")
	freezeAt := time.Now()
	rds.freeze()
	// Longer than frozenMaxLatency, so that a request waiting for the
	// thaw instead of a timeout would show.
	sleepFor(3 * time.Second)
	frozenReady := readiness(t, ag.admin)
	frozenBypassed := redis("error") + redis("skipped") - failedBefore
	thawAt := time.Now()
	rds.thaw()
	freezeRecovery := recovered("Redis hits after the thaw", thawAt)
	sleepFor(time.Second)
	end := time.Now()
	rs := load.stop()

	all := summarize(rs)
	t.Logf("whole run (%s): %s", end.Sub(begin).Round(time.Millisecond), all)
	t.Logf("killed (%s down, restart took %s): %s; Redis lookups failed or skipped meanwhile: %.0f",
		restartAt.Sub(killAt).Round(time.Millisecond), upAt.Sub(restartAt).Round(time.Millisecond),
		summarize(overlapping(rs, killAt, upAt)), bypassed)
	t.Logf("readiness while killed: %s, while frozen: %s", killedReady, frozenReady)
	t.Logf("after the restart: Redis tier hit again %s after it was up, %d keys in Redis", killRecovery.Round(time.Millisecond), keys)
	t.Logf("frozen (%s): %s; Redis lookups failed or skipped meanwhile: %.0f",
		thawAt.Sub(freezeAt).Round(time.Millisecond), summarize(overlapping(rs, freezeAt, thawAt)), frozenBypassed)
	t.Logf("after the thaw: Redis tier hit again %s after SIGCONT", freezeRecovery.Round(time.Millisecond))

	if n := logFailures(t, "failed", rs, func(r loadResult) bool { return r.err == nil && r.status == http.StatusOK }, begin); n > 0 {
		t.Errorf("%d of %d requests failed; want every one 200 while Redis fails", n, len(rs))
	}
	if n := logFailures(t, "slow", rs, func(r loadResult) bool {
		return r.latency() <= faultMaxLatency || r.start.Before(thawAt) && r.end.After(freezeAt) && r.latency() <= frozenMaxLatency
	}, begin); n > 0 {
		t.Errorf("%d requests took longer than %s (%s while Redis was frozen)", n, faultMaxLatency, frozenMaxLatency)
	}
	if bypassed == 0 || frozenBypassed == 0 {
		t.Errorf("Redis lookups failed or skipped: %.0f while killed, %.0f while frozen; want some in both: the fault did not reach authgate", bypassed, frozenBypassed)
	}
	// Redis is an accelerator: without it authgate is degraded, still
	// ready.
	for _, a := range []readyAnswer{killedReady, frozenReady} {
		if a.code != http.StatusOK || a.status != "degraded" || a.took > readyMaxLatency {
			t.Errorf("readiness while Redis was killed or frozen: %s; want 200 degraded within %s", a, readyMaxLatency)
		}
	}
	if keys <= 0 {
		t.Errorf("Redis holds %d keys after the restart, want the tokens verified since", keys)
	}
}

// faultProject is the Firebase project of the suite's tokens.
const faultProject = "demo-faults"

// firebaseUser is a Firebase uid and an ID token for it.
type firebaseUser struct{ uid, token string }

func firebaseUsers(t *testing.T, key *verifytest.Key, prefix string, n int) []firebaseUser {
	t.Helper()
	now := time.Now()
	us := make([]firebaseUser, n)
	for i := range us {
		uid := fmt.Sprintf("%s%03d", prefix, i)
		us[i] = firebaseUser{uid: uid, token: key.Sign(t, verifytest.FirebaseClaims(faultProject, uid, now), nil)}
	}
	return us
}

// TestFaultPostgresRestart stops the private PostgreSQL cluster under load
// while known and new Firebase users keep coming, and starts it again:
// on_unavailable decides what they get meanwhile, no request waits past the
// federation timeouts, and afterwards every user has exactly one row.
func TestFaultPostgresRestart(t *testing.T) {
	pg := startPostgres(t)
	key := verifytest.RSAKey(t, "faults-pg")
	ks := verifytest.NewKeyServer(t)
	ks.ServeX509(t, key)

	tests := []struct {
		name       string
		givePolicy string
		// giveCacheTTL is federation.cache_ttl: off, so that every
		// request meets PostgreSQL and the policy, or the default.
		giveCacheTTL string
		// wantOutage is the status of a request that needs PostgreSQL
		// while it is down; wantReady and wantStatus what /readyz answers
		// meanwhile.
		wantOutage int
		wantReady  int
		wantStatus string
		// wantCached: known users keep their row, from the cache.
		wantCached bool
	}{
		{
			name: "allow", givePolicy: "allow", giveCacheTTL: "-1s",
			wantOutage: http.StatusOK, wantReady: http.StatusOK, wantStatus: "degraded",
		},
		{
			name: "deny", givePolicy: "deny", giveCacheTTL: "-1s",
			wantOutage: http.StatusServiceUnavailable, wantReady: http.StatusServiceUnavailable, wantStatus: "not_ready",
		},
		{
			name: "allow with the default user cache", givePolicy: "allow", giveCacheTTL: "1m",
			wantOutage: http.StatusOK, wantReady: http.StatusOK, wantStatus: "degraded", wantCached: true,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testPostgresRestart(t, pg, ks, key, pgFault{
				schema: fmt.Sprintf("faults_%d", i), policy: tt.givePolicy, cacheTTL: tt.giveCacheTTL,
				wantOutage: tt.wantOutage, wantReady: tt.wantReady, wantStatus: tt.wantStatus, wantCached: tt.wantCached,
			})
		})
	}
}

// Federation timeouts of the PostgreSQL fault: a request waits at most
// their sum for the user table.
const (
	pgAcquireTimeout = 500 * time.Millisecond
	pgQueryTimeout   = 500 * time.Millisecond
	pgSlack          = time.Second
)

// pgFault is one case of TestFaultPostgresRestart.
type pgFault struct {
	schema, policy, cacheTTL string
	wantOutage, wantReady    int
	wantStatus               string
	wantCached               bool
}

func testPostgresRestart(t *testing.T, pg *pgCluster, ks *verifytest.KeyServer, key *verifytest.Key, c pgFault) {
	cfg := fmt.Sprintf(`
server:
  public: {addr: "127.0.0.1:0"}
  admin: {addr: "localhost:0"}
  shutdown_grace: 5s
log: {level: info, format: json, access_log: false}
upstream: ""
trusted_proxies: ["127.0.0.1/32"]
routes:
  - name: default
    path: /
verify:
  firebase:
    enabled: true
    project_id: %s
    keys: {url: %q}
    session_cookies: {enabled: false}
federation:
  enabled: true
  database_url: %q
  schema: %s
  acquire_timeout: %s
  query_timeout: %s
  on_unavailable: %s
  cache_ttl: %s
`, faultProject, ks.URL, pg.DBURL, c.schema, pgAcquireTimeout, pgQueryTimeout, c.policy, c.cacheTTL)
	migrateWith(t, cfg)
	ag := startAuthgate(t, cfg)

	known := firebaseUsers(t, key, c.schema+"-known-", 20)
	// New users: some first seen during the outage, some after it, which
	// tell when PostgreSQL serves again.
	during := firebaseUsers(t, key, c.schema+"-during-", 300)
	after := firebaseUsers(t, key, c.schema+"-after-", 400)
	knownIDs := map[string]string{}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	for _, u := range known {
		r := doLoadRequest(client, forwardAuthRequest(ag.public, u.token))
		if r.err != nil || r.status != http.StatusOK || !uuidRE.MatchString(r.userID) || r.federation != "active" {
			t.Fatalf("first request of %s = %d %v, X-User-Id %q, X-User-Federation %q; want 200 with a new row", u.uid, r.status, r.err, r.userID, r.federation)
		}
		knownIDs[u.uid] = r.userID
	}

	// phase is 1 while PostgreSQL is down: then every tenth request is a
	// new user's, each sent twice; and 2 once it is started again: then
	// every fortieth is a new user's, each sent once, enough for the 16s
	// a recovery may take. All others are known users'.
	var phase atomic.Int32
	var seq atomic.Int64
	var next [3]atomic.Int64
	pools := [3][]firebaseUser{nil, during, after}
	tags := [3]string{"", "during:", "after:"}
	every := [3]int64{0, 10, 40}
	repeat := [3]int64{0, 2, 1}
	load := startLoad(t, loadSpec{
		workers: faultWorkers, maxDuration: 2 * time.Minute, timeout: 10 * time.Second, pace: 10 * time.Millisecond,
		next: func(int) (*http.Request, string) {
			n, p := seq.Add(1), phase.Load()
			if p > 0 && n%every[p] == 0 {
				if i := (next[p].Add(1) - 1) / repeat[p]; i < int64(len(pools[p])) {
					u := pools[p][i]
					return forwardAuthRequest(ag.public, u.token), tags[p] + u.uid
				}
			}
			u := known[n%int64(len(known))]
			return forwardAuthRequest(ag.public, u.token), "known:" + u.uid
		},
	})

	begin := time.Now()
	sleepFor(time.Second)
	stopAt := time.Now()
	pg.stop(t)
	downAt := time.Now()
	phase.Store(1)
	sleepFor(1500 * time.Millisecond)
	outageReady := readiness(t, ag.admin)
	sleepFor(1500 * time.Millisecond)
	phase.Store(2)
	startAt := time.Now()
	pg.start(t)
	upAt := time.Now()
	healthy := func(r loadResult) bool {
		return r.err == nil && r.status == http.StatusOK && r.federation == "active" && uuidRE.MatchString(r.userID)
	}
	first := load.waitFor(t, 20*time.Second, "a new user given a row after the restart", upAt, func(r loadResult) bool {
		return strings.HasPrefix(r.tag, "after:") && healthy(r)
	})
	recoveredAt := first.end

	// Every new user answered during the outage.
	seen := map[string]bool{}
	for _, r := range load.snapshot() {
		if uid, ok := strings.CutPrefix(r.tag, "during:"); ok {
			seen[uid] = true
		}
	}
	var pendingRows time.Duration
	if c.policy == "allow" {
		// Their rows are created in the background (federation.Store.Run,
		// every 5s) once PostgreSQL answers again.
		pollUntil(t, 20*time.Second, "rows of the users served during the outage", func() bool {
			return len(userRows(t, pg.DBURL, c.schema, keysOf(seen))) == len(seen)
		})
		pendingRows = time.Since(upAt)
	}
	sleepFor(500 * time.Millisecond)
	end := time.Now()
	rs := load.stop()
	var rowsBeforeRetry int
	if c.policy == "deny" {
		// Refused users are not remembered: their rows come with their
		// next request.
		rowsBeforeRetry = len(userRows(t, pg.DBURL, c.schema, keysOf(seen)))
		for _, u := range during {
			if !seen[u.uid] {
				continue
			}
			if r := doLoadRequest(client, forwardAuthRequest(ag.public, u.token)); !healthy(r) {
				t.Errorf("request of %s after the outage = %d %v, X-User-Id %q; want 200 with a row", u.uid, r.status, r.err, r.userID)
			}
		}
	}

	outageRs := within(rs, downAt, startAt)
	t.Logf("whole run (%s): %s", end.Sub(begin).Round(time.Millisecond), summarize(rs))
	t.Logf("stop took %s, PostgreSQL down %s, start took %s", downAt.Sub(stopAt).Round(time.Millisecond),
		startAt.Sub(downAt).Round(time.Millisecond), upAt.Sub(startAt).Round(time.Millisecond))
	t.Logf("during the outage (on_unavailable %s, cache_ttl %s): %s; %d new users among them; readiness %s",
		c.policy, c.cacheTTL, summarize(outageRs), len(seen), outageReady)
	t.Logf("stop to recovery: %s", summarize(overlapping(rs, stopAt, recoveredAt)))
	t.Logf("recovered: first new user given a row %s after PostgreSQL was up", recoveredAt.Sub(upAt).Round(time.Millisecond))
	if c.policy == "allow" {
		t.Logf("rows of the %d users served during the outage created %s after PostgreSQL was up", len(seen), pendingRows.Round(time.Millisecond))
	} else {
		t.Logf("rows of the %d users refused during the outage: %d before their next request", len(seen), rowsBeforeRetry)
	}

	if len(outageRs) == 0 || len(seen) == 0 {
		t.Fatalf("%d requests, %d of new users, within the outage: the load did not reach it", len(outageRs), len(seen))
	}
	// Readiness follows the policy: with deny every request that needs
	// PostgreSQL fails, so the replica leaves the load balancer; with
	// allow it keeps serving.
	if outageReady.code != c.wantReady || outageReady.status != c.wantStatus {
		t.Errorf("readiness during the outage = %s, want %d %s", outageReady, c.wantReady, c.wantStatus)
	}
	// The policy, while PostgreSQL is down.
	okOutage := func(r loadResult) bool {
		kind, uid, _ := strings.Cut(r.tag, ":")
		switch {
		case kind == "known" && c.wantCached:
			return healthy(r) && r.userID == knownIDs[uid]
		case r.err != nil || r.status != c.wantOutage:
			return false
		case c.wantOutage == http.StatusOK:
			// Degraded: the identity from the token, its subject as the id.
			return r.federation == "degraded" && r.userID == uid
		}
		return true
	}
	if n := logFailures(t, "outage", outageRs, okOutage, begin); n > 0 {
		t.Errorf("%d of %d requests during the outage broke on_unavailable %s", n, len(outageRs), c.policy)
	}
	// Around it: the policy's answer or a row-backed one, nothing else.
	okAny := func(r loadResult) bool {
		return r.err == nil && (r.status == http.StatusOK || r.status == c.wantOutage)
	}
	if n := logFailures(t, "any", rs, okAny, begin); n > 0 {
		t.Errorf("%d of %d requests got neither 200 nor %d", n, len(rs), c.wantOutage)
	}
	// After the recovery: rows again.
	recovered := within(rs, recoveredAt, end.Add(time.Minute))
	if n := logFailures(t, "after recovery", recovered, healthy, begin); n > 0 {
		t.Errorf("%d of %d requests after the recovery were not served from PostgreSQL", n, len(recovered))
	}
	bound := pgAcquireTimeout + pgQueryTimeout + pgSlack
	if n := logFailures(t, "slow", rs, func(r loadResult) bool { return r.latency() <= bound }, begin); n > 0 {
		t.Errorf("%d requests took longer than acquire_timeout + query_timeout + %s = %s", n, pgSlack, bound)
	}

	// Exactly one row per user, and known users kept theirs.
	uids := keysOf(seen)
	for uid := range knownIDs {
		uids = append(uids, uid)
	}
	nAfter := 0
	for _, r := range rs {
		if uid, ok := strings.CutPrefix(r.tag, "after:"); ok && !slices.Contains(uids, uid) && healthy(r) {
			uids = append(uids, uid)
			nAfter++
		}
	}
	rows := userRows(t, pg.DBURL, c.schema, uids)
	for _, uid := range uids {
		if got := rows[uid]; got.n != 1 {
			t.Errorf("%s has %d rows, want 1", uid, got.n)
		} else if id, ok := knownIDs[uid]; ok && got.id != id {
			t.Errorf("%s row id %s, want %s from before the outage", uid, got.id, id)
		}
	}
	t.Logf("rows checked: %d users (%d known, %d new during the outage, %d new after it), each exactly one row",
		len(uids), len(knownIDs), len(seen), nAfter)
}

func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// migrateWith runs "authgate migrate" with the configuration cfg.
func migrateWith(t *testing.T, cfg string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "migrate.yaml")
	e2eWriteFile(t, path, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, authgateBinary(t), "migrate", "--config", path)
	cmd.Env = e2eEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("authgate migrate: %v\n%s", err, out)
	}
}

// userRow is what userRows found for one Firebase uid.
type userRow struct {
	n  int
	id string
}

// userRows counts the rows of each uid in schema's user table; uids without
// a row are absent.
func userRows(t *testing.T, dbURL, schema string, uids []string) map[string]userRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	q := "SELECT firebase_uid, count(*), min(id::text) FROM " + pgx.Identifier{schema, "users"}.Sanitize() +
		" WHERE firebase_uid = ANY($1) GROUP BY firebase_uid"
	rows, err := conn.Query(ctx, q, uids)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]userRow{}
	for rows.Next() {
		var uid string
		var r userRow
		if err := rows.Scan(&uid, &r.n, &r.id); err != nil {
			t.Fatal(err)
		}
		out[uid] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Key endpoint timings of TestFaultKeyEndpoint: short, so that the
// background refresh meets every fault within a second or two.
const (
	keyFetchTimeout = 300 * time.Millisecond
	keyMinRefresh   = 500 * time.Millisecond
)

// TestFaultKeyEndpoint makes the Firebase key endpoint fail, hang and serve
// garbage under load: tokens of the known key keep verifying throughout,
// tokens naming an unknown kid are refused without waiting past the fetch
// timeout, and a rotated key is picked up within the refresh bound once the
// endpoint recovers.
func TestFaultKeyEndpoint(t *testing.T) {
	key1 := verifytest.RSAKey(t, "faults-k1")
	key2 := verifytest.RSAKey(t, "faults-k2")
	ks := verifytest.NewKeyServer(t)
	// Keys are stale after a second, so that the background refresh runs
	// into every fault.
	ks.SetCacheControl("public, max-age=1")
	ks.ServeX509(t, key1)
	// The token cache is off: every request looks its key up.
	ag := startAuthgate(t, fmt.Sprintf(`
server:
  public: {addr: "127.0.0.1:0"}
  admin: {addr: "localhost:0"}
  shutdown_grace: 5s
log: {level: info, format: json, access_log: false}
upstream: ""
trusted_proxies: ["127.0.0.1/32"]
routes:
  - name: default
    path: /
verify:
  firebase:
    enabled: true
    project_id: %s
    keys:
      url: %q
      fetch_timeout: %s
      min_refresh_interval: %s
      default_max_age: 1s
      max_stale: 1h
    session_cookies: {enabled: false}
  cache:
    ttl: -1s
`, faultProject, ks.URL, keyFetchTimeout, keyMinRefresh))

	old := firebaseUsers(t, key1, "k1-user-", 32)
	rotated := firebaseUsers(t, key2, "k2-user-", 32)
	unknownKid := firebaseUsers(t, key1.WithID("faults-unknown"), "unknown-kid-", 4)
	var rotatedOn atomic.Bool
	var seq atomic.Int64
	load := startLoad(t, loadSpec{
		workers: faultWorkers, maxDuration: time.Minute, timeout: 10 * time.Second, pace: 10 * time.Millisecond,
		next: func(w int) (*http.Request, string) {
			n := seq.Add(1)
			switch {
			case w == 0: // one worker keeps asking for a kid nobody serves
				return forwardAuthRequest(ag.public, unknownKid[n%4].token), "unknown"
			case rotatedOn.Load() && n%2 == 0:
				return forwardAuthRequest(ag.public, rotated[n%32].token), "rotated"
			}
			return forwardAuthRequest(ag.public, old[n%32].token), "old"
		},
	})

	type phase struct {
		name       string
		fault      func()
		from, to   time.Time
		keyFetches int
		ready      readyAnswer
	}
	phases := []*phase{
		{name: "500", fault: ks.Fail},
		{name: "hang", fault: ks.Hang},
		{name: "garbage", fault: func() { ks.Serve(http.StatusOK, "<html>not json") }},
	}
	begin := time.Now()
	sleepFor(time.Second)
	for _, p := range phases {
		n := ks.Requests()
		p.from = time.Now()
		p.fault()
		sleepFor(2 * time.Second)
		p.ready = readiness(t, ag.admin)
		p.to = time.Now()
		p.keyFetches = ks.Requests() - n
	}

	// Rotation: the endpoint recovers with a new key next to the old.
	rotateAt := time.Now()
	ks.ServeX509(t, key1, key2)
	rotatedOn.Store(true)
	first := load.waitFor(t, 10*time.Second, "a token of the rotated key accepted", rotateAt, func(r loadResult) bool {
		return r.tag == "rotated" && r.err == nil && r.status == http.StatusOK
	})
	pickedUp := first.end.Sub(rotateAt)
	sleepFor(time.Second)
	end := time.Now()
	rs := load.stop()

	byTag := func(tag string, rs []loadResult) []loadResult {
		var out []loadResult
		for _, r := range rs {
			if r.tag == tag {
				out = append(out, r)
			}
		}
		return out
	}
	t.Logf("whole run (%s): known key %s; unknown kid %s", end.Sub(begin).Round(time.Millisecond),
		summarize(byTag("old", rs)), summarize(byTag("unknown", rs)))
	for _, p := range phases {
		t.Logf("endpoint %s for %s (%d fetches, readiness %s): known key %s", p.name, p.to.Sub(p.from).Round(time.Millisecond),
			p.keyFetches, p.ready, summarize(byTag("old", overlapping(rs, p.from, p.to))))
		if p.keyFetches == 0 {
			t.Errorf("endpoint %s: no fetch reached it; the fault was not exercised", p.name)
		}
		// Stale keys still verify: degraded, not out of the load balancer.
		if p.ready.code != http.StatusOK || p.ready.status != "degraded" {
			t.Errorf("endpoint %s: readiness %s, want 200 degraded", p.name, p.ready)
		}
	}
	t.Logf("rotated key accepted %s after the endpoint recovered; rotated-key tokens: %s",
		pickedUp.Round(time.Millisecond), summarize(byTag("rotated", rs)))

	okOld := func(r loadResult) bool { return r.err == nil && r.status == http.StatusOK }
	if n := logFailures(t, "known key", byTag("old", rs), okOld, begin); n > 0 {
		t.Errorf("%d tokens of the known key were not accepted while the endpoint failed", n)
	}
	if s := summarize(byTag("old", rs)); s.max > faultMaxLatency {
		t.Errorf("slowest known-key request took %s, want at most %s", s.max, faultMaxLatency)
	}
	// An unknown kid may wait for a fetch in progress and one of its own.
	unknownBound := 2*keyFetchTimeout + time.Second
	okUnknown := func(r loadResult) bool {
		return r.err == nil && r.status == http.StatusUnauthorized && r.latency() <= unknownBound
	}
	if n := logFailures(t, "unknown kid", byTag("unknown", rs), okUnknown, begin); n > 0 {
		t.Errorf("%d unknown-kid requests were not refused with 401 within %s", n, unknownBound)
	}
	if bound := keyMinRefresh + keyFetchTimeout + time.Second; pickedUp > bound {
		t.Errorf("rotated key accepted %s after the endpoint recovered, want within min_refresh_interval + fetch_timeout + 1s = %s", pickedUp, bound)
	}
	okRotated := func(r loadResult) bool { return r.err == nil && r.status == http.StatusOK }
	if n := logFailures(t, "rotated key after pick-up", within(byTag("rotated", rs), first.end, end.Add(time.Minute)), okRotated, begin); n > 0 {
		t.Errorf("%d rotated-key tokens refused after the key was picked up", n)
	}
}

// TestFaultSIGTERMUnderLoad sends SIGTERM while the reverse proxy has
// requests in flight to a slow upstream: every request sent before the
// signal completes with 200, new connections are refused while the rest
// drain, and authgate exits 0 within the grace period.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	const (
		slow  = 200 * time.Millisecond
		long  = 1500 * time.Millisecond // keeps authgate draining while the test dials
		grace = 5 * time.Second
	)
	var arrived atomic.Int64
	longArrived := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		d := slow
		if r.URL.Path == "/long" {
			d = long
			select {
			case longArrived <- struct{}{}:
			default:
			}
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		_, _ = fmt.Fprintln(w, "upstream ok")
	}))
	t.Cleanup(upstream.Close)
	ag := startAuthgate(t, fmt.Sprintf(`
server:
  public: {addr: "127.0.0.1:0"}
  admin: {addr: "localhost:0"}
  shutdown_grace: %s
log: {level: info, format: json, access_log: false}
upstream: %q
routes:
  - name: default
    path: /
verify:
  legacy:
    enabled: true
    issuer: "https://auth.example.test"
    audience: platform
    secret_files: [%q]
`, grace, upstream.URL, writeTestSecret(t)))

	toks := legacyTokens(t, "term-user-", faultWorkers)
	proxied := func(path, tok string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ag.public+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return req
	}
	load := startLoad(t, loadSpec{
		workers: faultWorkers, maxDuration: time.Minute, timeout: 10 * time.Second,
		next: func(w int) (*http.Request, string) { return proxied("/api/x", toks[w]), "short" },
	})
	begin := time.Now()
	sleepFor(time.Second)

	longRes := make(chan loadResult, 1)
	go func() {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		longRes <- doLoadRequest(client, proxied("/long", toks[0]))
	}()
	select {
	case <-longArrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the long request did not reach the upstream within 5s")
	}

	sigAt := time.Now()
	if err := ag.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The listener closes while the long request still drains.
	var refusedAt time.Time
	pollUntil(t, 2*time.Second, "public listener refusing connections after SIGTERM", func() bool {
		c, err := net.DialTimeout("tcp", ag.public, 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return false
		}
		refusedAt = time.Now()
		return isConnRefused(err)
	})
	drainingWhenRefused := !ag.exited()
	refusedAfter := 0
	for range 5 {
		if _, err := net.DialTimeout("tcp", ag.public, 100*time.Millisecond); isConnRefused(err) {
			refusedAfter++
		}
	}
	// Let the requests in flight at the signal finish and the workers find
	// the listener gone.
	sleepFor(time.Until(sigAt.Add(2 * slow)))
	rs := load.stop()
	var exitAt time.Time
	select {
	case <-ag.done:
		exitAt = time.Now()
	case <-time.After(grace + 2*time.Second):
		t.Fatalf("authgate did not exit within shutdown_grace %s + 2s of SIGTERM", grace)
	}
	lr := <-longRes

	var before, after []loadResult
	for _, r := range rs {
		if !r.wrote.IsZero() && r.wrote.Before(sigAt) {
			before = append(before, r)
		} else {
			after = append(after, r)
		}
	}
	inFlight := overlapping(before, sigAt, sigAt.Add(time.Nanosecond))
	afterOK := 0
	for _, r := range after {
		if r.err == nil && r.status == http.StatusOK {
			afterOK++
		}
	}
	t.Logf("load ran %s; the upstream received %d requests", time.Since(begin).Round(time.Millisecond), arrived.Load())
	t.Logf("sent before SIGTERM: %s; %d of them in flight at the signal: %s",
		summarize(before), len(inFlight), summarize(inFlight))
	t.Logf("sent after SIGTERM: %d, %d answered 200 (before the listener closed), the rest refused", len(after), afterOK)
	t.Logf("listener refused connections %s after SIGTERM (authgate still draining: %t), %d of 5 later dials refused; exit %s after SIGTERM (grace %s)",
		refusedAt.Sub(sigAt).Round(100*time.Microsecond), drainingWhenRefused, refusedAfter, exitAt.Sub(sigAt).Round(time.Millisecond), grace)

	okDone := func(r loadResult) bool { return r.err == nil && r.status == http.StatusOK }
	if n := logFailures(t, "sent before SIGTERM", before, okDone, sigAt); n > 0 {
		t.Errorf("%d of %d requests sent before SIGTERM did not complete with 200", n, len(before))
	}
	if len(inFlight) == 0 {
		t.Errorf("no request was in flight at SIGTERM: the test did not exercise the drain")
	}
	if !okDone(lr) {
		t.Errorf("long request in flight at SIGTERM = %d %v, want 200", lr.status, lr.err)
	}
	// After the signal a request lands on a connection accepted before the
	// listener closed (200) or is refused; authgate never answers an error.
	if n := logFailures(t, "sent after SIGTERM", after, func(r loadResult) bool {
		return r.err == nil && r.status == http.StatusOK || r.err != nil && isConnRefused(r.err)
	}, sigAt); n > 0 {
		t.Errorf("%d requests sent after SIGTERM were neither answered 200 nor refused", n)
	}
	if !drainingWhenRefused || refusedAfter != 5 {
		t.Errorf("listener refused while draining: %t, later dials refused: %d of 5; want new connections refused during the drain", drainingWhenRefused, refusedAfter)
	}
	if ag.err != nil {
		t.Errorf("authgate exited with %v, want exit status 0", ag.err)
	}
	if out := ag.out.String(); !strings.Contains(out, `"msg":"stopped"`) {
		t.Errorf("log has no \"stopped\" line")
	}
}

package federation

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authgate/authgate/verify"
)

// upserts returns user_upserts_total{result=r}.
func (f *fixture) upserts(r result) int {
	return int(testutil.ToFloat64(f.s.m.upserts[r]))
}

func TestEnsureUserCreatesFirebaseUser(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	id := firebaseID("uid-new", "New@Example.com", true)
	id.Role = "admin"

	u, err := f.s.EnsureUser(ctx, id)
	if err != nil {
		t.Fatalf("EnsureUser: %v", err)
	}
	if u.ID == "" || !validUUID(u.ID) {
		t.Errorf("ID = %q, want a uuid", u.ID)
	}
	want := User{
		ID: u.ID, FirebaseUID: "uid-new", Email: "New@Example.com", Username: "name-uid-new", UserType: "admin",
		IsActive: true, FederationStatus: StatusActive, LastSyncedAt: f.clock.Now(),
	}
	got := u
	got.CreatedAt, got.UpdatedAt = time.Time{}, time.Time{}
	got.LastSyncedAt = got.LastSyncedAt.UTC()
	if got != want {
		t.Errorf("EnsureUser = %+v, want %+v", got, want)
	}
	if n := f.count(t, "SELECT count(*) FROM users"); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
	if n := f.upserts(resultCreated); n != 1 {
		t.Errorf("user_upserts_total{result=created} = %d, want 1", n)
	}
}

func TestEnsureUserDefaults(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	// The name is taken (in another case: usernames are unique regardless
	// of case): the new row goes without a username.
	if _, err := f.s.Repo().Create(ctx, NewUser{Username: "Name-UID-A"}); err != nil {
		t.Fatal(err)
	}
	id := firebaseID("uid-a", "a@example.com", false)
	u, err := f.s.EnsureUser(ctx, id)
	if err != nil {
		t.Fatalf("EnsureUser: %v", err)
	}
	if u.Username != "" || u.UserType != "user" {
		t.Errorf("username, user_type = %q, %q, want \"\", \"user\"", u.Username, u.UserType)
	}
	// An unverified email claims no address.
	if u.Email != "" {
		t.Errorf("Email = %q, want none: the token's email is not verified", u.Email)
	}
}

func TestEnsureUserExistingIsCacheHit(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	id := firebaseID("uid-hit", "hit@example.com", true)
	first, err := f.s.EnsureUser(ctx, id)
	if err != nil {
		t.Fatalf("EnsureUser: %v", err)
	}
	before := f.queries.n.Load()
	second, err := f.s.EnsureUser(ctx, id)
	if err != nil {
		t.Fatalf("EnsureUser again: %v", err)
	}
	if second.ID != first.ID {
		t.Errorf("second EnsureUser ID = %s, want %s", second.ID, first.ID)
	}
	if n := f.queries.n.Load() - before; n != 0 {
		t.Errorf("second EnsureUser sent %d queries, want 0 (cache hit)", n)
	}
	if n := f.upserts(resultExisting); n != 1 {
		t.Errorf("user_upserts_total{result=existing} = %d, want 1", n)
	}
}

func TestEnsureUserExistingWithoutCache(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.CacheTTL = -1 }})
	ctx := testContext(t)
	id := firebaseID("uid-db", "db@example.com", true)
	first, err := f.s.EnsureUser(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	before := f.queries.n.Load()
	second, err := f.s.EnsureUser(ctx, id)
	if err != nil || second.ID != first.ID {
		t.Fatalf("EnsureUser again = %s, %v, want %s", second.ID, err, first.ID)
	}
	if n := f.queries.n.Load() - before; n != 1 {
		t.Errorf("EnsureUser of an existing user sent %d queries, want 1", n)
	}
}

func TestEnsureUserLinksVerifiedEmail(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	legacy, err := f.s.Repo().Create(ctx, NewUser{Email: "Legacy@Example.com", Username: "legacy", TokenBalance: 7})
	if err != nil {
		t.Fatal(err)
	}
	// Cached by id before the link.
	if _, err := f.s.EnsureUser(ctx, legacyID(legacy.ID)); err != nil {
		t.Fatalf("EnsureUser(legacy): %v", err)
	}

	u, err := f.s.EnsureUser(ctx, firebaseID("uid-link", "legacy@EXAMPLE.com", true))
	if err != nil {
		t.Fatalf("EnsureUser: %v", err)
	}
	if u.ID != legacy.ID || u.FirebaseUID != "uid-link" || u.TokenBalance != 7 || u.FederationStatus != StatusActive {
		t.Errorf("EnsureUser = %+v, want the legacy row %s linked to uid-link", u, legacy.ID)
	}
	if n := f.count(t, "SELECT count(*) FROM users"); n != 1 {
		t.Errorf("rows = %d, want 1: the account was linked, not duplicated", n)
	}
	if n := f.upserts(resultLinked); n != 1 {
		t.Errorf("user_upserts_total{result=linked} = %d, want 1", n)
	}
	// The legacy token now sees the link: its cache entry was invalidated.
	got, err := f.s.EnsureUser(ctx, legacyID(legacy.ID))
	if err != nil || got.FirebaseUID != "uid-link" {
		t.Errorf("EnsureUser(legacy) after link = %q, %v, want firebase uid uid-link", got.FirebaseUID, err)
	}
}

func TestEnsureUserTakeoverWithUnverifiedEmail(t *testing.T) {
	tests := []struct {
		name       string
		givePolicy string
		wantErr    error
		wantUser   User
	}{
		{name: "deny", givePolicy: PolicyDeny, wantErr: ErrLinkRefused},
		{name: "allow", givePolicy: PolicyAllow, wantUser: User{
			FirebaseUID: "attacker", Email: "victim@example.com", IsActive: true, FederationStatus: StatusFailed,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{config: func(c *Config) { c.OnEmailConflict = tt.givePolicy }})
			ctx := testContext(t)
			victim, err := f.s.Repo().Create(ctx, NewUser{Email: "Victim@Example.com", TokenBalance: 100})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.s.EnsureUser(ctx, legacyID(victim.ID)); err != nil { // cached
				t.Fatal(err)
			}

			got, err := f.s.EnsureUser(ctx, firebaseID("attacker", "victim@example.com", false))
			if !errors.Is(err, tt.wantErr) || got != tt.wantUser {
				t.Errorf("EnsureUser = %+v, %v, want %+v, %v", got, err, tt.wantUser, tt.wantErr)
			}
			row, err := f.s.Repo().FindByID(ctx, victim.ID)
			if err != nil {
				t.Fatal(err)
			}
			if row.FirebaseUID != "" {
				t.Errorf("victim's firebase_uid = %q, want none: an unverified email must never link", row.FirebaseUID)
			}
			if row.FederationStatus != StatusFailed || row.LastSyncError != reasonUnverifiedEmail || row.SyncAttempts != 1 {
				t.Errorf("victim's status, error, attempts = %s, %q, %d, want failed, %q, 1",
					row.FederationStatus, row.LastSyncError, row.SyncAttempts, reasonUnverifiedEmail)
			}
			if n := f.count(t, "SELECT count(*) FROM users"); n != 1 {
				t.Errorf("rows = %d, want 1: no row for the attacker", n)
			}
			if n := f.upserts(resultLinkRefused); n != 1 {
				t.Errorf("user_upserts_total{result=link_refused} = %d, want 1", n)
			}
			// The victim's cached row was invalidated.
			cached, err := f.s.EnsureUser(ctx, legacyID(victim.ID))
			if err != nil || cached.FederationStatus != StatusFailed {
				t.Errorf("EnsureUser(victim) = %s, %v, want status failed", cached.FederationStatus, err)
			}
		})
	}
}

func TestEnsureUserEmailLinkedToAnotherUID(t *testing.T) {
	tests := []struct {
		name       string
		givePolicy string
		wantErrs   []error
		wantID     string
	}{
		{name: "deny", givePolicy: PolicyDeny, wantErrs: []error{ErrLinkRefused, ErrConflict}},
		{name: "allow", givePolicy: PolicyAllow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{config: func(c *Config) { c.OnEmailConflict = tt.givePolicy }})
			ctx := testContext(t)
			owner, err := f.s.Repo().Create(ctx, NewUser{FirebaseUID: "owner", Email: "owner@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.s.EnsureUser(ctx, firebaseID("intruder", "OWNER@example.com", true))
			for _, want := range tt.wantErrs {
				if !errors.Is(err, want) {
					t.Errorf("EnsureUser error = %v, want %v", err, want)
				}
			}
			if got.ID != "" {
				t.Errorf("EnsureUser ID = %q, want none", got.ID)
			}
			row, err := f.s.Repo().FindByID(ctx, owner.ID)
			if err != nil {
				t.Fatal(err)
			}
			if row.FirebaseUID != "owner" || row.FederationStatus != StatusActive || row.SyncAttempts != 0 {
				t.Errorf("owner's row = %+v, want untouched", row)
			}
			if n := f.count(t, "SELECT count(*) FROM users"); n != 1 {
				t.Errorf("rows = %d, want 1", n)
			}
			if n := f.upserts(resultConflict); n != 1 {
				t.Errorf("user_upserts_total{result=conflict} = %d, want 1", n)
			}
		})
	}
}

func TestEnsureUserLegacy(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	row, err := f.s.Repo().Create(ctx, NewUser{Email: "legacy@example.com", UserType: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    string
		wantID  string
		wantErr error
	}{
		{name: "found", give: row.ID, wantID: row.ID},
		{name: "upper case", give: strings.ToUpper(row.ID), wantID: row.ID},
		{name: "no row", give: "00000000-0000-4000-8000-000000000000", wantErr: ErrUnknownUser},
		{name: "not a uuid", give: "42", wantErr: ErrUnknownUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.s.EnsureUser(ctx, legacyID(tt.give))
			if u.ID != tt.wantID || !errors.Is(err, tt.wantErr) {
				t.Errorf("EnsureUser(%q) = %q, %v, want %q, %v", tt.give, u.ID, err, tt.wantID, tt.wantErr)
			}
		})
	}
	if n := f.count(t, "SELECT count(*) FROM users"); n != 1 {
		t.Errorf("rows = %d, want 1: legacy identities never create rows", n)
	}
}

func TestEnsureUserDisabled(t *testing.T) {
	no, disabled := false, StatusDisabled
	tests := []struct {
		name   string
		change func(r *Repo, id string) error
	}{
		{name: "inactive", change: func(r *Repo, id string) error {
			_, err := r.Update(testContext(t), id, Changes{IsActive: &no})
			return err
		}},
		{name: "status disabled", change: func(r *Repo, id string) error {
			_, err := r.Update(testContext(t), id, Changes{FederationStatus: &disabled})
			return err
		}},
		{name: "soft deleted", change: func(r *Repo, id string) error {
			_, err := r.SoftDelete(testContext(t), id)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{})
			ctx := testContext(t)
			fid := firebaseID("uid-off", "off@example.com", true)
			u, err := f.s.EnsureUser(ctx, fid) // created and cached
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.s.EnsureUser(ctx, legacyID(u.ID)); err != nil { // cached by id
				t.Fatal(err)
			}
			if err := tt.change(f.s.Repo(), u.ID); err != nil {
				t.Fatal(err)
			}
			for _, id := range []verify.Identity{fid, legacyID(u.ID)} {
				if _, err := f.s.EnsureUser(ctx, id); !errors.Is(err, ErrUserDisabled) {
					t.Errorf("EnsureUser(%s) = %v, want ErrUserDisabled", id.Provider, err)
				}
			}
			if n := f.upserts(resultDisabled); n != 2 {
				t.Errorf("user_upserts_total{result=disabled} = %d, want 2", n)
			}
		})
	}
}

// concurrently runs fn n times at once and returns the users and errors.
func concurrently(n int, fn func(i int) (User, error)) ([]User, []error) {
	users := make([]User, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			users[i], errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return users, errs
}

// checkOneUser fails unless every call succeeded with one and the same
// row, and the table holds exactly one row for uid.
func checkOneUser(t *testing.T, f *fixture, uid string, users []User, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("EnsureUser #%d: %v", i, err)
		}
		if users[i].ID == "" || users[i].ID != users[0].ID {
			t.Fatalf("EnsureUser #%d ID = %q, want %q like #0", i, users[i].ID, users[0].ID)
		}
	}
	if n := f.count(t, "SELECT count(*) FROM users WHERE firebase_uid = $1", uid); n != 1 {
		t.Errorf("rows for %s = %d, want exactly 1", uid, n)
	}
	t.Logf("%d concurrent EnsureUser: %d row(s)", len(users), f.count(t, "SELECT count(*) FROM users"))
}

const concurrentFirstRequests = 200

func TestEnsureUserConcurrentFirstRequests(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	id := firebaseID("uid-rush", "rush@example.com", true)
	users, errs := concurrently(concurrentFirstRequests, func(int) (User, error) { return f.s.EnsureUser(ctx, id) })
	checkOneUser(t, f, "uid-rush", users, errs)
	if n := f.upserts(resultCreated); n != 1 {
		t.Errorf("user_upserts_total{result=created} = %d, want 1", n)
	}
}

// TestEnsureUserConcurrentReplicas runs the first requests on several
// Stores without a cache, as replicas would: nothing in-process collapses
// them, only PostgreSQL's unique rules.
func TestEnsureUserConcurrentReplicas(t *testing.T) {
	tests := []struct {
		name      string
		giveUID   string
		giveEmail string
		legacy    bool // a legacy account with the email exists
	}{
		{name: "create", giveUID: "uid-replicas", giveEmail: "replicas@example.com"},
		{name: "link", giveUID: "uid-replicas-link", giveEmail: "linked@example.com", legacy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noCache := func(c *Config) { c.CacheTTL = -1; c.MaxConns = 20 }
			first := newFixture(t, fixtureOpts{config: noCache})
			replicas := []*Store{first.s}
			for range 3 {
				replicas = append(replicas, newFixture(t, fixtureOpts{config: noCache, schema: first.schema}).s)
			}
			ctx := testContext(t)
			var legacy User
			if tt.legacy {
				var err error
				if legacy, err = first.s.Repo().Create(ctx, NewUser{Email: tt.giveEmail}); err != nil {
					t.Fatal(err)
				}
			}
			id := firebaseID(tt.giveUID, tt.giveEmail, true)
			users, errs := concurrently(concurrentFirstRequests, func(i int) (User, error) {
				return replicas[i%len(replicas)].EnsureUser(ctx, id)
			})
			checkOneUser(t, first, tt.giveUID, users, errs)
			writes := 0 // rows created or linked, over every replica
			for _, s := range replicas {
				writes += int(testutil.ToFloat64(s.m.upserts[resultCreated]) + testutil.ToFloat64(s.m.upserts[resultLinked]))
			}
			if writes != 1 {
				t.Errorf("requests that created or linked the row = %d, want 1", writes)
			}
			if n := first.count(t, "SELECT count(*) FROM users"); n != 1 {
				t.Errorf("rows = %d, want 1", n)
			}
			if tt.legacy && users[0].ID != legacy.ID {
				t.Errorf("ID = %s, want the legacy account %s", users[0].ID, legacy.ID)
			}
		})
	}
}

func TestEnsureUserLastLoginBatched(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.LastLoginInterval = 5 * time.Minute }})
	ctx := testContext(t)
	id := firebaseID("uid-login", "login@example.com", true)
	start := f.clock.Now()
	var u User
	for range 10 {
		var err error
		if u, err = f.s.EnsureUser(ctx, id); err != nil {
			t.Fatal(err)
		}
		f.clock.Add(10 * time.Second)
	}
	f.s.flushLogins(ctx)
	if n := testutil.ToFloat64(f.s.m.lastLoginWrites); n != 1 {
		t.Errorf("last_login_writes_total = %v after 10 requests in one interval, want 1", n)
	}
	row, err := f.s.Repo().FindByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !row.LastLogin.Equal(start) {
		t.Errorf("last_login = %v, want %v (the first request)", row.LastLogin, start)
	}
	if !row.UpdatedAt.After(row.CreatedAt) {
		t.Errorf("updated_at = %v, want it moved past created_at %v by the last_login write", row.UpdatedAt, row.CreatedAt)
	}

	// Another replica in the same interval: its flush writes nothing.
	other := newFixture(t, fixtureOpts{schema: f.schema})
	other.clock.Add(f.clock.Now().Sub(other.clock.Now()))
	if _, err := other.s.EnsureUser(ctx, id); err != nil {
		t.Fatal(err)
	}
	other.s.flushLogins(ctx)
	if n := testutil.ToFloat64(other.s.m.lastLoginWrites); n != 0 {
		t.Errorf("other replica's last_login_writes_total = %v, want 0: written within the interval", n)
	}

	// The next interval writes again.
	f.clock.Add(5 * time.Minute)
	if _, err := f.s.EnsureUser(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.s.flushLogins(ctx)
	if n := testutil.ToFloat64(f.s.m.lastLoginWrites); n != 2 {
		t.Errorf("last_login_writes_total = %v after the next interval, want 2", n)
	}
}

// TestLastLoginBacklogBounded: a backlog of last_login writes larger than
// one statement's chunk is written in full, in statements of flushChunk
// rows; writes beyond last_login_max are dropped and counted, and the
// user's next request after the interval schedules them again.
func TestLastLoginBacklogBounded(t *testing.T) {
	const users, max = 2*flushChunk + 200, 2*flushChunk + 100
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.LastLoginMax = max; c.CacheTTL = -1 }})
	ctx := testContext(t)
	var ids []string
	for i := range users {
		u, err := f.s.EnsureUser(ctx, firebaseID(fmt.Sprintf("uid-backlog-%d", i), fmt.Sprintf("backlog%d@example.com", i), true))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	if n := testutil.ToFloat64(f.s.m.loginsDropped); n != users-max {
		t.Errorf("last_login_dropped_total = %v, want %d (%d logins, last_login_max %d)", n, users-max, users, max)
	}
	before := f.queries.n.Load()
	f.s.flushLogins(ctx)
	if n := testutil.ToFloat64(f.s.m.lastLoginWrites); n != max {
		t.Errorf("last_login_writes_total = %v, want %d", n, max)
	}
	if n := f.queries.n.Load() - before; n != 3 {
		t.Errorf("flush sent %d statements for %d rows, want 3 of at most %d", n, max, flushChunk)
	}
	if n := f.count(t, "SELECT count(*) FROM users WHERE last_login IS NOT NULL"); n != max {
		t.Errorf("rows with last_login = %d, want %d", n, max)
	}

	// After the interval a dropped user's next request is written.
	f.clock.Add(f.s.cfg.LastLoginInterval)
	if _, err := f.s.EnsureUser(ctx, firebaseID(fmt.Sprintf("uid-backlog-%d", users-1), fmt.Sprintf("backlog%d@example.com", users-1), true)); err != nil {
		t.Fatal(err)
	}
	f.s.flushLogins(ctx)
	row, err := f.s.Repo().FindByID(ctx, ids[users-1])
	if err != nil {
		t.Fatal(err)
	}
	if row.LastLogin.IsZero() {
		t.Error("a dropped user's last_login is still unset after its next request")
	}
}

// TestLastLoginTrackerBounded: however many users log in within an
// interval, a replica remembers at most last_login_max of them; the
// others' writes are scheduled or dropped and counted as before, and the
// flush after the interval makes room again.
func TestLastLoginTrackerBounded(t *testing.T) {
	const max, users = 100, 5000
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.LastLoginMax = max }})
	ctx := testContext(t)
	held := func() int { return remembered(f.s) }
	login := func(from int) {
		for i := from; i < from+users; i++ {
			f.s.touch(User{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i)})
		}
	}
	login(0)
	if n := held(); n != max || f.s.logins.len() != max {
		t.Errorf("users remembered after %d logins = %d (counted %d), want last_login_max %d", users, n, f.s.logins.len(), max)
	}
	if n := testutil.ToFloat64(f.s.m.loginsDropped); n != users-max {
		t.Errorf("last_login_dropped_total = %v, want %d", n, users-max)
	}

	f.clock.Add(f.s.cfg.LastLoginInterval)
	f.s.flushLogins(ctx)
	if n := held(); n != 0 {
		t.Errorf("users remembered after the interval's flush = %d, want 0", n)
	}
	login(users)
	if n := held(); n != max || f.s.logins.len() != max {
		t.Errorf("users remembered after %d more logins = %d (counted %d), want last_login_max %d", users, n, f.s.logins.len(), max)
	}
}

// remembered counts the users s's last-login tracker holds.
func remembered(s *Store) int {
	n := 0
	for i := range s.logins.shards {
		tab := *s.logins.shards[i].tab.Load()
		for j := range tab {
			if tab[j].key.Load() != 0 {
				n++
			}
		}
	}
	return n
}

// TestLastLoginTrackerConcurrent: logins on several goroutines while the
// flushes prune keep the tracker within last_login_max, its count exact.
func TestLastLoginTrackerConcurrent(t *testing.T) {
	const max = 1000
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.LastLoginMax = max }})
	interval := f.s.cfg.LastLoginInterval
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5000 {
				f.s.touch(User{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", (g*1000+i)%3000)})
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			f.s.logins.forget(f.clock.Now().Add(time.Duration(i%2)*interval).UnixNano(), interval.Nanoseconds())
		}
	})
	wg.Wait()
	if n := remembered(f.s); n > max || n != f.s.logins.len() {
		t.Errorf("users remembered = %d (counted %d), want at most %d and counted exactly", n, f.s.logins.len(), max)
	}
}

// TestLoginTrackerDue: a user's write is due once per interval, however
// many users the tracker holds, and a prune keeps only the users of the
// last interval, in tables shrunk to fit them.
func TestLoginTrackerDue(t *testing.T) {
	const users, interval = 20_000, int64(time.Minute)
	var tr loginTracker
	tr.init(users)
	id := func(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }
	for i := range users {
		if !tr.due(id(i), 0, interval) {
			t.Fatalf("user %d: first login not due", i)
		}
	}
	for i := range users {
		if tr.due(id(i), interval-1, interval) {
			t.Fatalf("user %d: due again within the interval", i)
		}
	}
	for i := range users / 2 {
		if !tr.due(id(i), interval, interval) {
			t.Fatalf("user %d: not due after the interval", i)
		}
	}
	tr.forget(interval+1, interval)
	slots := 0
	for i := range tr.shards {
		slots += len(*tr.shards[i].tab.Load())
	}
	if got := tr.len(); got != users/2 {
		t.Errorf("users after the prune = %d, want %d (those of the last interval)", got, users/2)
	}
	if limit := 4 * users / 2; slots > limit {
		t.Errorf("slots after the prune = %d, want at most %d", slots, limit)
	}
	for i := range users {
		if due := tr.due(id(i), interval+2, interval); due != (i >= users/2) {
			t.Fatalf("user %d: due = %t after the prune, want %t", i, due, i >= users/2)
		}
	}
}

// TestEnsureUserConcurrentLegacy: 200 first requests of one legacy user at
// once, over several replicas, all get its one row; nothing is created, and
// a legacy subject without a row is refused every time, never given one.
func TestEnsureUserConcurrentLegacy(t *testing.T) {
	noCache := func(c *Config) { c.CacheTTL = -1; c.MaxConns = 20 }
	first := newFixture(t, fixtureOpts{config: noCache})
	replicas := []*Store{first.s}
	for range 3 {
		replicas = append(replicas, newFixture(t, fixtureOpts{config: noCache, schema: first.schema}).s)
	}
	ctx := testContext(t)
	row, err := first.s.Repo().Create(ctx, NewUser{Email: "legacy-rush@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	users, errs := concurrently(concurrentFirstRequests, func(i int) (User, error) {
		return replicas[i%len(replicas)].EnsureUser(ctx, legacyID(row.ID))
	})
	for i, err := range errs {
		if err != nil || users[i].ID != row.ID {
			t.Fatalf("EnsureUser #%d = %q, %v; want the legacy row %q", i, users[i].ID, err, row.ID)
		}
	}
	unknown := "00000000-0000-4000-8000-000000000001"
	_, errs = concurrently(concurrentFirstRequests, func(i int) (User, error) {
		return replicas[i%len(replicas)].EnsureUser(ctx, legacyID(unknown))
	})
	for i, err := range errs {
		if !errors.Is(err, ErrUnknownUser) {
			t.Fatalf("EnsureUser #%d for a legacy subject without a row = %v, want ErrUnknownUser", i, err)
		}
	}
	if n := first.count(t, "SELECT count(*) FROM users"); n != 1 {
		t.Errorf("rows = %d after %d concurrent legacy requests, want the 1 that existed", n, 2*concurrentFirstRequests)
	}
}

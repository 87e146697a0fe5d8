package federation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"

	"firebase.google.com/go/v4/auth"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/authgate/authgate/internal/configerr"
)

func TestWorkerConfigValidate(t *testing.T) {
	on := func(c WorkerConfig) WorkerConfig { c.Enabled = true; return c }
	tests := []struct {
		name     string
		give     WorkerConfig
		wantKeys []string
	}{
		{name: "disabled, anything goes", give: configtest.Fill(WorkerConfig{Interval: -1, BatchSize: -1}, DefaultWorkerConfig())},
		{name: "defaults", give: on(configtest.Fill(WorkerConfig{}, DefaultWorkerConfig()))},
		{name: "all set", give: on(configtest.Fill(WorkerConfig{Interval: time.Second, BatchSize: 10_000, MaxAttempts: 100, BackoffBase: time.Second, BackoffMax: time.Second}, DefaultWorkerConfig()))},
		{name: "interval", give: on(configtest.Fill(WorkerConfig{Interval: time.Millisecond}, DefaultWorkerConfig())), wantKeys: []string{"interval"}},
		{name: "negative", give: on(configtest.Fill(WorkerConfig{Interval: -time.Second, BatchSize: -1, MaxAttempts: -1, BackoffBase: -time.Second, BackoffMax: -time.Second}, DefaultWorkerConfig())),
			wantKeys: []string{"interval", "batch_size", "max_attempts", "backoff_base", "backoff_max"}},
		{name: "too large", give: on(configtest.Fill(WorkerConfig{Interval: 48 * time.Hour, BatchSize: 10_001, MaxAttempts: 101, BackoffMax: 31 * 24 * time.Hour}, DefaultWorkerConfig())),
			wantKeys: []string{"interval", "batch_size", "max_attempts", "backoff_max"}},
		{name: "max below base", give: on(configtest.Fill(WorkerConfig{BackoffBase: time.Hour, BackoffMax: time.Minute}, DefaultWorkerConfig())), wantKeys: []string{"backoff_max"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var keys []string
			for _, err := range configerr.List(tt.give.Validate()) {
				key, _, _ := strings.Cut(err.Error(), ":")
				keys = append(keys, key)
			}
			if fmt.Sprint(keys) != fmt.Sprint(tt.wantKeys) {
				t.Errorf("Validate() keys = %v, want %v", keys, tt.wantKeys)
			}
		})
	}

	d := DefaultConfig().Worker
	if d.Enabled || d.Interval != time.Minute || d.BatchSize != 100 || d.MaxAttempts != 10 || d.BackoffBase != time.Minute || d.BackoffMax != time.Hour {
		t.Errorf("DefaultConfig().Worker = %+v", d)
	}
	// Under federation: prefixed, and the lock needs a second connection.
	c := configtest.Fill(Config{Enabled: true, DatabaseURL: secret.Secret(testURL), MinConns: 1, MaxConns: 1, Worker: configtest.Fill(WorkerConfig{Enabled: true, BatchSize: -1}, DefaultWorkerConfig())}, DefaultConfig())
	var keys []string
	for _, err := range configerr.List(c.Validate()) {
		key, _, _ := strings.Cut(err.Error(), ":")
		keys = append(keys, key)
	}
	if want := "[worker.batch_size worker.enabled]"; fmt.Sprint(keys) != want {
		t.Errorf("Config.Validate() keys = %v, want %s", keys, want)
	}
	c = configtest.Fill(Config{Enabled: true, DatabaseURL: secret.Secret(testURL), FirebaseCredentialsFile: "/nonexistent/key.json"}, DefaultConfig())
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "firebase_credentials_file:") {
		t.Errorf("Validate() with a missing credentials file = %v, want a firebase_credentials_file problem", err)
	}
}

func TestWorkerMetricsPreCreated(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		s, err := Open(testContext(t), configtest.Fill(Config{DatabaseURL: secret.Secret(closedPortURL), Worker: configtest.Fill(WorkerConfig{Enabled: enabled}, DefaultWorkerConfig())}, DefaultConfig()), nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int{"federation_worker_runs_total": 0, "federation_worker_rows_total": 0}
		if enabled {
			want = map[string]int{"federation_worker_runs_total": int(numRunResults), "federation_worker_rows_total": int(numRowResults)}
		}
		for name, n := range want {
			if got, err := testutil.GatherAndCount(reg, name); err != nil || got != n {
				t.Errorf("worker enabled %t: %s has %d series, %v, want %d", enabled, name, got, err, n)
			}
		}
		if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
			t.Errorf("metric lint: %v, %v", problems, err)
		}
		s.Close()
	}
}

// workerConfig is the worker used by the tests: 1m doubling to 1h.
func workerConfig(c *Config) {
	c.Worker = configtest.Fill(WorkerConfig{Enabled: true, BackoffBase: time.Minute, BackoffMax: time.Hour, MaxAttempts: 10}, DefaultWorkerConfig())
}

// rows returns federation_worker_rows_total{result=r}.
func (f *fixture) rows(r rowResult) int { return int(testutil.ToFloat64(f.s.m.workerRows[r])) }

// rowsTotal returns federation_worker_rows_total over every result.
func (f *fixture) rowsTotal() int {
	n := 0
	for r := range numRowResults {
		n += f.rows(r)
	}
	return n
}

// runs returns federation_worker_runs_total{result=r}.
func (f *fixture) runs(r runResult) int { return int(testutil.ToFloat64(f.s.m.workerRuns[r])) }

// round runs one worker round and wants it to go through.
func (f *fixture) round(t *testing.T, p Profiles) {
	t.Helper()
	if got := f.s.workRound(testContext(t), p); got != runOK {
		t.Fatalf("workRound = %s, want ok", runResultNames[got])
	}
}

// find returns the row with id.
func (f *fixture) find(t *testing.T, id string) User {
	t.Helper()
	u, err := f.s.Repo().FindByID(testContext(t), id)
	if err != nil {
		t.Fatalf("FindByID(%s): %v", id, err)
	}
	return u
}

// refusedLink makes the legacy account with email a refused link, as
// EnsureUser records it when a Firebase identity with that email arrives
// unverified: failed, one attempt, no uid.
func (f *fixture) refusedLink(t *testing.T, email, uid string) User {
	t.Helper()
	ctx := testContext(t)
	legacy, err := f.s.Repo().Create(ctx, NewUser{Email: email, Username: "legacy-" + randomHex(t, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.EnsureUser(ctx, firebaseID(uid, email, false)); !errors.Is(err, ErrLinkRefused) {
		t.Fatalf("EnsureUser(unverified %s) = %v, want ErrLinkRefused", uid, err)
	}
	u := f.find(t, legacy.ID)
	if u.FederationStatus != StatusFailed || u.FirebaseUID != "" || u.SyncAttempts != 1 {
		t.Fatalf("refused link = %+v, want failed, unlinked, 1 attempt", u)
	}
	return u
}

// failedRow creates the row nu and records a failed federation on it:
// failed, one attempt, last_synced_at now.
func (f *fixture) failedRow(t *testing.T, nu NewUser) User {
	t.Helper()
	ctx := testContext(t)
	u, err := f.s.Repo().Create(ctx, nu)
	if err != nil {
		t.Fatal(err)
	}
	if u, err = f.s.Repo().MarkFailed(ctx, u.ID, "test: sync failed"); err != nil {
		t.Fatal(err)
	}
	return u
}

// A refused link is retried with back-off and linked once Firebase says
// the email is verified, never before.
func TestWorkerLinksRefusedLinkOnceVerified(t *testing.T) {
	e := testEmulator(t)
	f := newFixture(t, fixtureOpts{config: workerConfig})
	ctx := testContext(t)
	uid, email := e.newUser(t, fbUser{email: "owner@example.test"})
	row := f.refusedLink(t, email, uid)
	if _, err := f.s.EnsureUser(ctx, legacyID(row.ID)); err != nil { // cached by id
		t.Fatal(err)
	}

	// Each step: how far the clock moves, then one round.
	steps := []struct {
		name         string
		advance      time.Duration
		verify       bool // Firebase verifies the email before the round
		wantAttempts int
		wantUID      string
		wantRows     int // rows retried so far
	}{
		{name: "just failed: not due", advance: 0, wantAttempts: 1},
		{name: "59s: not due", advance: 59 * time.Second, wantAttempts: 1},
		{name: "1m: due, still unverified", advance: time.Second, wantAttempts: 2, wantRows: 1},
		{name: "1m later: waiting 2m now", advance: time.Minute, wantAttempts: 2, wantRows: 1},
		{name: "2m later: due, still unverified", advance: time.Minute, wantAttempts: 3, wantRows: 2},
		{name: "verified but 3m later: waiting 4m", advance: 3 * time.Minute, verify: true, wantAttempts: 3, wantRows: 2},
		{name: "4m later: linked", advance: time.Minute, wantAttempts: 0, wantUID: uid, wantRows: 3},
		{name: "linked: nothing left", advance: time.Hour, wantAttempts: 0, wantUID: uid, wantRows: 3},
	}
	for _, st := range steps {
		f.clock.Add(st.advance)
		if st.verify {
			e.update(t, uid, (&auth.UserToUpdate{}).EmailVerified(true))
		}
		f.round(t, e.profiles)
		got := f.find(t, row.ID)
		if got.SyncAttempts != st.wantAttempts || got.FirebaseUID != st.wantUID || f.rowsTotal() != st.wantRows {
			t.Fatalf("%s: attempts %d, uid %q, rows retried %d; want %d, %q, %d",
				st.name, got.SyncAttempts, got.FirebaseUID, f.rowsTotal(), st.wantAttempts, st.wantUID, st.wantRows)
		}
		if st.wantUID == "" && (got.FederationStatus != StatusFailed || st.wantAttempts > 1 && got.LastSyncError != reasonEmailUnverified) {
			t.Fatalf("%s: status %s, error %q; want failed, %q", st.name, got.FederationStatus, got.LastSyncError, reasonEmailUnverified)
		}
	}
	got := f.find(t, row.ID)
	if got.FederationStatus != StatusActive || got.LastSyncError != "" || got.Email != row.Email || got.Username != row.Username {
		t.Errorf("linked row = %+v, want active, no error, email and username kept", got)
	}
	if f.rows(rowFailed) != 2 || f.rows(rowLinked) != 1 {
		t.Errorf("rows failed, linked = %d, %d, want 2, 1", f.rows(rowFailed), f.rows(rowLinked))
	}
	// The cached row was invalidated; the Firebase user now gets it.
	if u, err := f.s.EnsureUser(ctx, legacyID(row.ID)); err != nil || u.FirebaseUID != uid || u.FederationStatus != StatusActive {
		t.Errorf("EnsureUser(legacy) = %q %s, %v, want linked and active", u.FirebaseUID, u.FederationStatus, err)
	}
	if u, err := f.s.EnsureUser(ctx, firebaseID(uid, email, true)); err != nil || u.ID != row.ID {
		t.Errorf("EnsureUser(firebase) = %q, %v, want the linked account %s", u.ID, err, row.ID)
	}
}

// What an unlinked failed row meets in Firebase decides whether it is
// linked: only a verified, enabled user with the very email whose uid has
// no row.
func TestWorkerRelinkRules(t *testing.T) {
	e := testEmulator(t)
	tests := []struct {
		name      string
		give      fbUser
		noUser    bool // no Firebase user has the email
		uidTaken  bool // another row holds the Firebase user's uid
		noEmail   bool // the row has no email
		wantLink  bool
		wantError string
	}{
		{name: "verified", give: fbUser{email: "ok@example.test", verified: true}, wantLink: true},
		{name: "unverified", give: fbUser{email: "unverified@example.test"}, wantError: reasonEmailUnverified},
		{name: "verified but disabled", give: fbUser{email: "disabled@example.test", verified: true, disabled: true}, wantError: reasonEmailDisabled},
		{name: "no firebase user", give: fbUser{email: "nobody@example.test", verified: true}, noUser: true, wantError: reasonNoFirebaseUser},
		{name: "uid has a row", give: fbUser{email: "taken@example.test", verified: true}, uidTaken: true, wantError: reasonUIDTaken},
		{name: "row without email", give: fbUser{email: "noemail@example.test", verified: true}, noEmail: true, wantError: reasonNoEmail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{config: workerConfig})
			ctx := testContext(t)
			uid, email := e.newUser(t, tt.give)
			if tt.noUser {
				if err := e.client.DeleteUser(ctx, uid); err != nil {
					t.Fatal(err)
				}
			}
			var other User
			if tt.uidTaken {
				var err error
				if other, err = f.s.Repo().Create(ctx, NewUser{FirebaseUID: uid, Email: "other-" + email}); err != nil {
					t.Fatal(err)
				}
			}
			nu := NewUser{Email: email}
			if tt.noEmail {
				nu.Email = ""
			}
			row := f.failedRow(t, nu)

			f.clock.Add(time.Minute)
			f.round(t, e.profiles)
			got := f.find(t, row.ID)
			if tt.wantLink {
				if got.FirebaseUID != uid || got.FederationStatus != StatusActive || got.SyncAttempts != 0 || f.rows(rowLinked) != 1 {
					t.Errorf("row = %+v, linked %d; want linked to %s, active", got, f.rows(rowLinked), uid)
				}
				return
			}
			if got.FirebaseUID != "" || got.FederationStatus != StatusFailed || got.SyncAttempts != 2 ||
				got.LastSyncError != tt.wantError || f.rows(rowFailed) != 1 {
				t.Errorf("row = %+v, failed %d; want unlinked, failed, 2 attempts, %q", got, f.rows(rowFailed), tt.wantError)
			}
			if tt.uidTaken {
				if o := f.find(t, other.ID); o.FirebaseUID != uid || o.FederationStatus != StatusActive {
					t.Errorf("the uid's own row = %+v, want untouched", o)
				}
			}
		})
	}
}

// A linked row whose federation failed is refreshed from its Firebase user
// record: username from the display name if free, email only if verified.
func TestWorkerRefreshesLinkedRow(t *testing.T) {
	e := testEmulator(t)
	tests := []struct {
		name          string
		give          fbUser
		takenName     bool // another row has the display name as username
		takenUpper    bool // ... in upper case
		takenEmail    bool // another live row has the Firebase email
		wantNewName   bool
		wantNewEmail  bool
		wantNameAfter string
	}{
		{name: "display name and verified email", give: fbUser{email: "new@example.test", verified: true, displayName: "New Name"},
			wantNewName: true, wantNewEmail: true},
		{name: "unverified email kept out", give: fbUser{email: "unverified@example.test", displayName: "Other Name"},
			wantNewName: true},
		{name: "username taken", give: fbUser{email: "taken@example.test", verified: true, displayName: "Taken Name"},
			takenName: true, wantNewEmail: true},
		{name: "username taken in another case", give: fbUser{email: "upper@example.test", verified: true, displayName: "Case Name"},
			takenName: true, takenUpper: true, wantNewEmail: true},
		{name: "email taken", give: fbUser{email: "owned@example.test", verified: true, displayName: "Some Name"},
			takenEmail: true, wantNewName: true},
		{name: "no display name, no email", give: fbUser{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{config: workerConfig})
			ctx := testContext(t)
			uid, email := e.newUser(t, tt.give)
			if tt.takenName {
				taken := tt.give.displayName
				if tt.takenUpper {
					taken = strings.ToUpper(taken)
				}
				if _, err := f.s.Repo().Create(ctx, NewUser{Username: taken}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.takenEmail {
				if _, err := f.s.Repo().Create(ctx, NewUser{Email: strings.ToUpper(email)}); err != nil {
					t.Fatal(err)
				}
			}
			row := f.failedRow(t, NewUser{FirebaseUID: uid, Email: "old-" + randomHex(t, 4) + "@example.test", Username: "old-" + randomHex(t, 4)})
			if _, err := f.s.EnsureUser(ctx, firebaseID(uid, row.Email, true)); err != nil { // cached by uid
				t.Fatal(err)
			}

			f.clock.Add(time.Minute)
			f.round(t, e.profiles)
			wantName, wantEmail := row.Username, row.Email
			if tt.wantNewName {
				wantName = tt.give.displayName
			}
			if tt.wantNewEmail {
				wantEmail = email
			}
			got := f.find(t, row.ID)
			if got.Username != wantName || got.Email != wantEmail || got.FederationStatus != StatusActive ||
				got.SyncAttempts != 0 || got.LastSyncError != "" || !got.LastSyncedAt.Equal(f.clock.Now()) || f.rows(rowRefreshed) != 1 {
				t.Errorf("row = %+v, refreshed %d; want username %q, email %q, active, synced now", got, f.rows(rowRefreshed), wantName, wantEmail)
			}
			// The cache entry by uid was invalidated.
			cached, err := f.s.EnsureUser(ctx, firebaseID(uid, row.Email, true))
			if err != nil || cached.Username != wantName || cached.Email != wantEmail || cached.FederationStatus != StatusActive {
				t.Errorf("EnsureUser after refresh = %+v, %v; want the refreshed row", cached, err)
			}
		})
	}
}

// A disabled Firebase user disables its row; a linked row whose Firebase
// user is gone is retried, not disabled.
func TestWorkerLinkedFirebaseUserState(t *testing.T) {
	e := testEmulator(t)
	f := newFixture(t, fixtureOpts{config: workerConfig})
	ctx := testContext(t)
	uid, _ := e.newUser(t, fbUser{email: "off@example.test", verified: true})
	e.update(t, uid, (&auth.UserToUpdate{}).Disabled(true))
	disabled := f.failedRow(t, NewUser{FirebaseUID: uid})
	gone := f.failedRow(t, NewUser{FirebaseUID: "fed-gone-" + randomHex(t, 4)})

	f.clock.Add(time.Minute)
	f.round(t, e.profiles)
	if got := f.find(t, disabled.ID); got.FederationStatus != StatusDisabled || got.LastSyncError != reasonFirebaseDisabled || got.SyncAttempts != 0 {
		t.Errorf("row of a disabled firebase user = %+v, want disabled", got)
	}
	if _, err := f.s.EnsureUser(ctx, firebaseID(uid, "", false)); !errors.Is(err, ErrUserDisabled) {
		t.Errorf("EnsureUser(disabled) = %v, want ErrUserDisabled", err)
	}
	if got := f.find(t, gone.ID); got.FederationStatus != StatusFailed || got.LastSyncError != reasonLinkedUserGone || got.SyncAttempts != 2 {
		t.Errorf("row of a deleted firebase user = %+v, want failed, 2 attempts, %q", got, reasonLinkedUserGone)
	}
	if f.rows(rowDisabled) != 1 || f.rows(rowFailed) != 1 {
		t.Errorf("rows disabled, failed = %d, %d, want 1, 1", f.rows(rowDisabled), f.rows(rowFailed))
	}
}

// After max_attempts a row stays failed and is not retried again.
func TestWorkerGivesUp(t *testing.T) {
	e := testEmulator(t)
	f := newFixture(t, fixtureOpts{config: func(c *Config) {
		workerConfig(c)
		c.Worker.MaxAttempts = 3
	}})
	row := f.failedRow(t, NewUser{Email: "never-" + randomHex(t, 4) + "@example.test"})
	for range 4 {
		f.clock.Add(time.Hour) // past any back-off
		f.round(t, e.profiles)
	}
	got := f.find(t, row.ID)
	if got.FederationStatus != StatusFailed || got.SyncAttempts != 3 || got.LastSyncError != reasonNoFirebaseUser {
		t.Errorf("row = %+v, want failed after 3 attempts", got)
	}
	if f.rows(rowFailed) != 1 || f.rows(rowGaveUp) != 1 || f.rowsTotal() != 2 {
		t.Errorf("rows failed, gave_up, total = %d, %d, %d, want 1, 1, 2", f.rows(rowFailed), f.rows(rowGaveUp), f.rowsTotal())
	}
}

// blockingProfiles holds its first lookup until released, so that a round
// stays inside the lock for as long as a test needs.
type blockingProfiles struct {
	Profiles
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	calls   atomic.Int64
}

func newBlockingProfiles(p Profiles) *blockingProfiles {
	return &blockingProfiles{Profiles: p, entered: make(chan struct{}), release: make(chan struct{})}
}

func (b *blockingProfiles) ByEmail(ctx context.Context, email string) (Profile, error) {
	b.calls.Add(1)
	b.once.Do(func() {
		close(b.entered)
		<-b.release
	})
	return b.Profiles.ByEmail(ctx, email)
}

// One replica at a time works: a round that finds the advisory lock taken
// skips, and rows are retried once however many replicas run the worker.
func TestWorkerOneReplicaAtATime(t *testing.T) {
	e := testEmulator(t)
	a := newFixture(t, fixtureOpts{config: workerConfig})
	b := newFixture(t, fixtureOpts{config: workerConfig, schema: a.schema})
	ctx := testContext(t)
	const n = 6
	newRows := func() []User {
		rows := make([]User, n)
		for i := range rows {
			_, email := e.newUser(t, fbUser{email: fmt.Sprintf("replica%d@example.test", i), verified: true})
			rows[i] = a.failedRow(t, NewUser{Email: email})
		}
		a.clock.Add(time.Minute)
		b.clock.Add(time.Minute)
		return rows
	}
	checkLinked := func(rows []User) {
		t.Helper()
		for _, r := range rows {
			if got := a.find(t, r.ID); got.FirebaseUID == "" || got.FederationStatus != StatusActive {
				t.Errorf("row %s = %+v, want linked", r.ID, got)
			}
		}
	}

	// A holds the lock while its first lookup is held: B skips.
	rows := newRows()
	pa := newBlockingProfiles(e.profiles)
	done := make(chan runResult, 1)
	go func() { done <- a.s.workRound(ctx, pa) }()
	<-pa.entered
	if got := b.s.workRound(ctx, e.profiles); got != runSkipped {
		t.Errorf("B's round while A holds the lock = %s, want skipped", runResultNames[got])
	}
	close(pa.release)
	if got := <-done; got != runOK {
		t.Errorf("A's round = %s, want ok", runResultNames[got])
	}
	checkLinked(rows)
	if a.rows(rowLinked) != n || b.rowsTotal() != 0 || b.runs(runSkipped) != 1 {
		t.Errorf("linked by A, rows by B, B skipped = %d, %d, %d, want %d, 0, 1", a.rows(rowLinked), b.rowsTotal(), b.runs(runSkipped), n)
	}
	// The lock went back with A's connection: B gets it now.
	if got := b.s.workRound(ctx, e.profiles); got != runOK {
		t.Errorf("B's round after A's = %s, want ok", runResultNames[got])
	}

	// A session elsewhere holding the lock keeps both out.
	conn, err := pgx.Connect(ctx, a.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", workerLockKey(a.schema)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*fixture{a, b} {
		if got := f.s.workRound(ctx, e.profiles); got != runSkipped {
			t.Errorf("round while another session holds the lock = %s, want skipped", runResultNames[got])
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", workerLockKey(a.schema)); err != nil {
		t.Fatal(err)
	}

	// Both replicas' workers running at once retry each row once.
	rows = newRows()
	linkedBefore := a.rows(rowLinked) + b.rows(rowLinked)
	totalBefore := a.rowsTotal() + b.rowsTotal()
	ticks := []chan time.Time{make(chan time.Time), make(chan time.Time)}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, f := range []*fixture{a, b} {
		f.s.workerTick = ticks[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.s.RunWorker(runCtx, e.profiles); err != nil {
				t.Errorf("RunWorker = %v", err)
			}
		}()
	}
	var sends sync.WaitGroup
	for range 3 {
		for _, tick := range ticks {
			sends.Add(1)
			go func() { defer sends.Done(); tick <- time.Time{} }()
		}
		sends.Wait()
	}
	stop()
	wg.Wait()
	checkLinked(rows)
	if linked, total := a.rows(rowLinked)+b.rows(rowLinked)-linkedBefore, a.rowsTotal()+b.rowsTotal()-totalBefore; linked != n || total != n {
		t.Errorf("rows linked, retried by both replicas = %d, %d, want %d, %d: each row once", linked, total, n, n)
	}
}

// fakeProfiles answers every lookup with err.
type fakeProfiles struct{ err error }

func (p fakeProfiles) ByUID(context.Context, string) (Profile, error)   { return Profile{}, p.err }
func (p fakeProfiles) ByEmail(context.Context, string) (Profile, error) { return Profile{}, p.err }

// Firebase down is no verdict on the rows: the round ends without counting
// an attempt.
func TestWorkerFirebaseUnavailable(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: workerConfig})
	first := f.failedRow(t, NewUser{Email: "a-" + randomHex(t, 4) + "@example.test"})
	second := f.failedRow(t, NewUser{FirebaseUID: "uid-" + randomHex(t, 4)})
	f.clock.Add(time.Minute)
	down := fakeProfiles{err: fmt.Errorf("get firebase user: %w", ErrFirebaseUnavailable)}
	if got := f.s.workRound(testContext(t), down); got != runError {
		t.Errorf("workRound with Firebase down = %s, want error", runResultNames[got])
	}
	for _, r := range []User{first, second} {
		if got := f.find(t, r.ID); got.SyncAttempts != 1 || got.FederationStatus != StatusFailed {
			t.Errorf("row = %+v, want failed with its 1 attempt", got)
		}
	}
	if f.rows(rowError) != 1 || f.rowsTotal() != 1 || f.runs(runError) != 1 {
		t.Errorf("rows error, total, runs error = %d, %d, %d, want 1, 1, 1", f.rows(rowError), f.rowsTotal(), f.runs(runError))
	}

	// Any other lookup error counts against the row.
	f.s.workRound(testContext(t), fakeProfiles{err: errors.New("invalid argument")})
	for _, r := range []User{first, second} {
		if got := f.find(t, r.ID); got.SyncAttempts != 2 || got.LastSyncError != reasonLookupFailed {
			t.Errorf("row = %+v, want 2 attempts, %q", got, reasonLookupFailed)
		}
	}
}

func TestRunWorker(t *testing.T) {
	tick := make(chan time.Time)
	f := newFixture(t, fixtureOpts{config: workerConfig, opts: []Option{withWorkerTick(tick)}})
	if err := f.s.RunWorker(testContext(t), nil); err == nil {
		t.Error("RunWorker without profiles = nil, want an error")
	}
	ctx, stop := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- f.s.RunWorker(ctx, fakeProfiles{}) }()
	for range 3 {
		tick <- time.Time{} // returns once the previous round is done
	}
	stop() // during or after the third round
	if err := <-done; err != nil {
		t.Errorf("RunWorker = %v, want nil", err)
	}
	if n := f.runs(runOK); n < 2 || f.runs(runError) != 0 {
		t.Errorf("runs ok, error = %d, %d, want at least 2, 0 (a round stopped by the shutdown is not an error)", n, f.runs(runError))
	}
}

// withWorkerTick drives RunWorker: each value sent is one round.
func withWorkerTick(c <-chan time.Time) Option { return func(o *options) { o.workerTick = c } }

func TestLinkUser(t *testing.T) {
	e := testEmulator(t)
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	uid, _ := e.newUser(t, fbUser{email: "link@example.test", verified: true})
	otherUID, _ := e.newUser(t, fbUser{})
	deletedUID, _ := e.newUser(t, fbUser{})
	legacy, err := r.Create(ctx, NewUser{Email: "legacy-" + randomHex(t, 4) + "@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if legacy, err = r.MarkFailed(ctx, legacy.ID, reasonUnverifiedEmail); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.EnsureUser(ctx, legacyID(legacy.ID)); err != nil { // cached
		t.Fatal(err)
	}
	holder, err := r.Create(ctx, NewUser{FirebaseUID: otherUID})
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := r.Create(ctx, NewUser{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SoftDelete(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	deletedHolder, err := r.Create(ctx, NewUser{FirebaseUID: deletedUID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SoftDelete(ctx, deletedHolder.ID); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		giveID  string
		giveUID string
		wantErr error
	}{
		{name: "link", giveID: legacy.ID, giveUID: uid},
		{name: "again: idempotent", giveID: legacy.ID, giveUID: uid},
		{name: "row linked to another uid", giveID: legacy.ID, giveUID: otherUID, wantErr: ErrConflict},
		{name: "uid held by another live row", giveID: mustCreate(t, f).ID, giveUID: otherUID, wantErr: ErrConflict},
		{name: "uid held by a soft-deleted row", giveID: mustCreate(t, f).ID, giveUID: deletedUID, wantErr: ErrConflict},
		{name: "unknown firebase uid", giveID: mustCreate(t, f).ID, giveUID: "fed-missing-" + randomHex(t, 4), wantErr: ErrUnknownFirebaseUser},
		{name: "soft-deleted row", giveID: deleted.ID, giveUID: uid, wantErr: ErrNotFound},
		{name: "unknown row", giveID: "0a0a0a0a-0000-4000-8000-0000000000ff", giveUID: uid, wantErr: ErrNotFound},
		{name: "not a uuid", giveID: "42", giveUID: uid, wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.s.LinkUser(ctx, tt.giveID, tt.giveUID, e.profiles)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("LinkUser(%s, %s) = %v, want %v", tt.giveID, tt.giveUID, err, tt.wantErr)
			}
			if tt.wantErr == nil && (got.ID != tt.giveID || got.FirebaseUID != tt.giveUID || got.FederationStatus != StatusActive ||
				got.SyncAttempts != 0 || got.LastSyncError != "") {
				t.Errorf("LinkUser = %+v, want linked and active", got)
			}
		})
	}
	if h := f.find(t, holder.ID); h.FirebaseUID != otherUID {
		t.Errorf("holder = %+v, want untouched", h)
	}
	// The cached row was invalidated.
	if u, err := f.s.EnsureUser(ctx, legacyID(legacy.ID)); err != nil || u.FirebaseUID != uid || u.FederationStatus != StatusActive {
		t.Errorf("EnsureUser(legacy) after LinkUser = %q %s, %v, want linked and active", u.FirebaseUID, u.FederationStatus, err)
	}
	if _, err := f.s.LinkUser(ctx, mustCreate(t, f).ID, uid, fakeProfiles{err: fmt.Errorf("x: %w", ErrFirebaseUnavailable)}); !errors.Is(err, ErrFirebaseUnavailable) {
		t.Errorf("LinkUser with Firebase down = %v, want ErrFirebaseUnavailable", err)
	}
}

// mustCreate creates an empty row.
func mustCreate(t *testing.T, f *fixture) User {
	t.Helper()
	u, err := f.s.Repo().Create(testContext(t), NewUser{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

package verify

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/authgate/authgate/internal/configtest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/configerr"
)

// fakeRecords is a UserRecords over a map, counting its calls. A uid that
// is not in states is not found; err, when set, fails every call. gate, when
// set, holds every call until it is closed.
type fakeRecords struct {
	mu     sync.Mutex
	states map[string]UserState
	err    error
	gate   chan struct{}
	calls  atomic.Int64
}

func (f *fakeRecords) UserState(ctx context.Context, uid string) (UserState, error) {
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return UserState{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return UserState{}, f.err
	}
	st, ok := f.states[uid]
	if !ok {
		return UserState{}, ErrUserNotFound
	}
	return st, nil
}

func (f *fakeRecords) set(uid string, st UserState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[uid] = st
}

// revocationClock is a settable clock, safe for concurrent use.
type revocationClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *revocationClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *revocationClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestRevocation builds a check over records with an in-process cache
// on clk.
func newTestRevocation(t testing.TB, cfg RevocationConfig, records UserRecords, clk *revocationClock) *revocation {
	t.Helper()
	c, err := cache.New[UserState](configtest.Fill(cache.Config{}, cache.DefaultConfig()), "firebase_users", nil, nil, zaptest.NewLogger(t), nil, cache.WithClock(clk.Now))
	if err != nil {
		t.Fatalf("cache.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return newRevocation(cfg, records, c)
}

func revocationContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// revokedAt is when the test users' tokens were revoked.
var revokedAt = time.Unix(1_700_000_000, 0)

// firebaseIdentity is a verified Firebase identity of uid, issued at iat,
// with the claims given as name, value pairs.
func firebaseIdentity(uid string, iat time.Time, claims ...any) Identity {
	m := map[string]any{"sub": uid}
	for i := 0; i+1 < len(claims); i += 2 {
		m[claims[i].(string)] = claims[i+1]
	}
	return Identity{Provider: ProviderFirebase, Subject: uid, FirebaseUID: uid, IssuedAt: iat, Claims: m}
}

func TestRevocationCheck(t *testing.T) {
	before, after := revokedAt.Add(-time.Minute), revokedAt.Add(time.Minute)
	tests := []struct {
		name       string
		giveState  *UserState // nil: the user does not exist
		giveErr    error      // from the Admin API
		giveID     Identity
		wantErrs   []error
		wantReason string
	}{
		{
			name:       "not revoked",
			giveState:  &UserState{TokensValidAfter: revokedAt},
			giveID:     firebaseIdentity("alice", after),
			wantReason: "ok",
		},
		{
			name:       "never revoked",
			giveState:  &UserState{},
			giveID:     firebaseIdentity("alice", before),
			wantReason: "ok",
		},
		{
			name:       "issued the second tokens were revoked",
			giveState:  &UserState{TokensValidAfter: revokedAt},
			giveID:     firebaseIdentity("alice", revokedAt),
			wantReason: "ok",
		},
		{
			name:       "disabled",
			giveState:  &UserState{Disabled: true},
			giveID:     firebaseIdentity("alice", after),
			wantErrs:   []error{ErrRevoked, ErrUserDisabled},
			wantReason: "disabled",
		},
		{
			name:       "tokens revoked after iat",
			giveState:  &UserState{TokensValidAfter: revokedAt},
			giveID:     firebaseIdentity("alice", before),
			wantErrs:   []error{ErrRevoked},
			wantReason: "revoked",
		},
		{
			name:       "auth_time before revocation, token refreshed after",
			giveState:  &UserState{TokensValidAfter: revokedAt},
			giveID:     firebaseIdentity("alice", after, "auth_time", json.Number("1699999940")),
			wantErrs:   []error{ErrRevoked},
			wantReason: "revoked",
		},
		{
			name:       "auth_time after revocation decides over iat",
			giveState:  &UserState{TokensValidAfter: revokedAt},
			giveID:     firebaseIdentity("alice", before, "auth_time", json.Number("1700000060")),
			wantReason: "ok",
		},
		{
			name:       "auth_time with a fraction",
			giveState:  &UserState{TokensValidAfter: revokedAt},
			giveID:     firebaseIdentity("alice", after, "auth_time", json.Number("1699999999.5")),
			wantErrs:   []error{ErrRevoked},
			wantReason: "revoked",
		},
		{
			name:       "auth_time as float64",
			giveState:  &UserState{TokensValidAfter: revokedAt},
			giveID:     firebaseIdentity("alice", before, "auth_time", float64(1700000001)),
			wantReason: "ok",
		},
		{
			name:       "auth_time not a number",
			giveState:  &UserState{},
			giveID:     firebaseIdentity("alice", after, "auth_time", "1700000060"),
			wantErrs:   []error{ErrInvalid},
			wantReason: "invalid",
		},
		{
			name:       "auth_time out of range",
			giveState:  &UserState{},
			giveID:     firebaseIdentity("alice", after, "auth_time", json.Number("-1")),
			wantErrs:   []error{ErrInvalid},
			wantReason: "invalid",
		},
		{
			name:       "neither auth_time nor iat",
			giveState:  &UserState{},
			giveID:     firebaseIdentity("alice", time.Time{}),
			wantErrs:   []error{ErrInvalid},
			wantReason: "invalid",
		},
		{
			name:       "no firebase uid",
			giveState:  &UserState{},
			giveID:     Identity{Provider: ProviderLegacy, Subject: "alice", IssuedAt: after},
			wantErrs:   []error{ErrInvalid},
			wantReason: "invalid",
		},
		{
			name:       "user not found",
			giveID:     firebaseIdentity("alice", after),
			wantErrs:   []error{ErrRevoked, ErrUserNotFound},
			wantReason: "revoked",
		},
		{
			name:       "admin api error",
			giveState:  &UserState{},
			giveErr:    errors.New("googleapi: 500 backend error"),
			giveID:     firebaseIdentity("alice", after),
			wantErrs:   []error{ErrRevocationUnavailable},
			wantReason: "revocation_unavailable",
		},
		{
			name:       "admin api timeout",
			giveState:  &UserState{},
			giveErr:    context.DeadlineExceeded,
			giveID:     firebaseIdentity("alice", after),
			wantErrs:   []error{ErrRevocationUnavailable, context.DeadlineExceeded},
			wantReason: "revocation_unavailable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records := &fakeRecords{states: map[string]UserState{}, err: tt.giveErr}
			if tt.giveState != nil {
				records.set("alice", *tt.giveState)
			}
			r := newTestRevocation(t, configtest.Fill(RevocationConfig{Enabled: true}, DefaultFirebaseConfig().Revocation), records, &revocationClock{t: revokedAt})

			err := r.check(revocationContext(t), tt.giveID)

			for _, want := range tt.wantErrs {
				if !errors.Is(err, want) {
					t.Errorf("check() = %v, want an error wrapping %v", err, want)
				}
			}
			if got := Reason(err); got != tt.wantReason {
				t.Errorf("Reason(check()) = %q (%v), want %q", got, err, tt.wantReason)
			}
		})
	}
}

// TestRevocationSingleCallPerTTL checks that concurrent checks of one user
// share one Admin API call, later ones within the TTL none, and the first
// after it a new one.
func TestRevocationSingleCallPerTTL(t *testing.T) {
	const n = 50
	clk := &revocationClock{t: revokedAt}
	records := &fakeRecords{
		states: map[string]UserState{"alice": {TokensValidAfter: revokedAt}},
		gate:   make(chan struct{}),
	}
	r := newTestRevocation(t, configtest.Fill(RevocationConfig{Enabled: true, CacheTTL: time.Minute}, DefaultFirebaseConfig().Revocation), records, clk)
	ctx := revocationContext(t)
	id := firebaseIdentity("alice", revokedAt.Add(time.Second))

	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			errs <- r.check(ctx, id)
		}()
	}
	started.Wait()
	close(records.gate)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("check() = %v, want nil", err)
		}
	}
	if got := records.calls.Load(); got != 1 {
		t.Fatalf("%d concurrent checks made %d Admin API calls, want 1", n, got)
	}

	clk.Add(time.Minute - time.Nanosecond)
	if err := r.check(ctx, id); err != nil {
		t.Fatalf("check() within the TTL = %v, want nil", err)
	}
	if got := records.calls.Load(); got != 1 {
		t.Fatalf("a check within the TTL made %d Admin API calls in all, want 1", got)
	}

	records.set("alice", UserState{Disabled: true})
	clk.Add(time.Nanosecond)
	if err := r.check(ctx, id); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("check() after the TTL = %v, want ErrUserDisabled", err)
	}
	if got := records.calls.Load(); got != 2 {
		t.Fatalf("a check after the TTL made %d Admin API calls in all, want 2", got)
	}
}

func TestRevocationDefaultTTL(t *testing.T) {
	clk := &revocationClock{t: revokedAt}
	records := &fakeRecords{states: map[string]UserState{"alice": {}}}
	r := newTestRevocation(t, configtest.Fill(RevocationConfig{Enabled: true}, DefaultFirebaseConfig().Revocation), records, clk)
	ctx := revocationContext(t)
	id := firebaseIdentity("alice", revokedAt)

	for _, step := range []struct {
		advance   time.Duration
		wantCalls int64
	}{{0, 1}, {59 * time.Second, 1}, {time.Second, 2}} {
		clk.Add(step.advance)
		if err := r.check(ctx, id); err != nil {
			t.Fatalf("check() = %v, want nil", err)
		}
		if got := records.calls.Load(); got != step.wantCalls {
			t.Fatalf("after %s more: %d Admin API calls, want %d", step.advance, got, step.wantCalls)
		}
	}
}

// TestRevocationNotFoundCached checks that a deleted user's tokens do not
// cost an Admin API call each.
func TestRevocationNotFoundCached(t *testing.T) {
	records := &fakeRecords{states: map[string]UserState{}}
	r := newTestRevocation(t, configtest.Fill(RevocationConfig{Enabled: true}, DefaultFirebaseConfig().Revocation), records, &revocationClock{t: revokedAt})
	ctx := revocationContext(t)
	for range 3 {
		if err := r.check(ctx, firebaseIdentity("ghost", revokedAt)); !errors.Is(err, ErrUserNotFound) {
			t.Fatalf("check() = %v, want ErrUserNotFound", err)
		}
	}
	if got := records.calls.Load(); got != 1 {
		t.Fatalf("3 checks of a missing user made %d Admin API calls, want 1", got)
	}
}

// TestRevocationErrorNotCached checks that a failed Admin API call is tried
// again by the next check rather than remembered.
func TestRevocationErrorNotCached(t *testing.T) {
	records := &fakeRecords{states: map[string]UserState{"alice": {}}, err: errors.New("connection refused")}
	r := newTestRevocation(t, configtest.Fill(RevocationConfig{Enabled: true}, DefaultFirebaseConfig().Revocation), records, &revocationClock{t: revokedAt})
	ctx := revocationContext(t)
	id := firebaseIdentity("alice", revokedAt)

	if err := r.check(ctx, id); !errors.Is(err, ErrRevocationUnavailable) {
		t.Fatalf("check() = %v, want ErrRevocationUnavailable", err)
	}
	records.mu.Lock()
	records.err = nil
	records.mu.Unlock()
	if err := r.check(ctx, id); err != nil {
		t.Fatalf("check() after the API recovered = %v, want nil", err)
	}
	if got := records.calls.Load(); got != 2 {
		t.Fatalf("Admin API calls = %d, want 2", got)
	}
}

func TestRevocationInvalidate(t *testing.T) {
	records := &fakeRecords{states: map[string]UserState{"alice": {}}}
	r := newTestRevocation(t, configtest.Fill(RevocationConfig{Enabled: true}, DefaultFirebaseConfig().Revocation), records, &revocationClock{t: revokedAt})
	ctx := revocationContext(t)
	id := firebaseIdentity("alice", revokedAt.Add(-time.Minute))

	if err := r.check(ctx, id); err != nil {
		t.Fatalf("check() = %v, want nil", err)
	}
	records.set("alice", UserState{TokensValidAfter: revokedAt})
	if err := r.check(ctx, id); err != nil {
		t.Fatalf("check() before Invalidate = %v, want nil (cached)", err)
	}
	if err := r.Invalidate(ctx, "alice"); err != nil {
		t.Fatalf("Invalidate() = %v", err)
	}
	if err := r.check(ctx, id); !errors.Is(err, ErrRevoked) {
		t.Fatalf("check() after Invalidate = %v, want ErrRevoked", err)
	}
}

func TestRevocationWithoutCache(t *testing.T) {
	records := &fakeRecords{states: map[string]UserState{"alice": {}}}
	r := newRevocation(configtest.Fill(RevocationConfig{Enabled: true}, DefaultFirebaseConfig().Revocation), records, nil)
	ctx := revocationContext(t)
	for range 2 {
		if err := r.check(ctx, firebaseIdentity("alice", revokedAt)); err != nil {
			t.Fatalf("check() = %v, want nil", err)
		}
	}
	if err := r.Invalidate(ctx, "alice"); err != nil {
		t.Fatalf("Invalidate() = %v", err)
	}
	if got := records.calls.Load(); got != 2 {
		t.Fatalf("Admin API calls = %d, want 2", got)
	}
}

func TestRevocationCallerCanceled(t *testing.T) {
	records := &fakeRecords{states: map[string]UserState{"alice": {}}, gate: make(chan struct{})}
	defer close(records.gate)
	r := newTestRevocation(t, configtest.Fill(RevocationConfig{Enabled: true}, DefaultFirebaseConfig().Revocation), records, &revocationClock{t: revokedAt})
	ctx, cancel := context.WithCancel(revocationContext(t))
	cancel()

	err := r.check(ctx, firebaseIdentity("alice", revokedAt))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("check() = %v, want context.Canceled", err)
	}
	if got := Reason(err); got != "canceled" {
		t.Errorf("Reason(check()) = %q, want %q", got, "canceled")
	}
}

// TestUserStateJSON checks that a state survives the trip through Redis.
func TestUserStateJSON(t *testing.T) {
	tests := []struct {
		name string
		give UserState
	}{
		{name: "zero", give: UserState{}},
		{name: "revoked", give: UserState{TokensValidAfter: time.UnixMilli(1_700_000_000_000).UTC()}},
		{name: "disabled", give: UserState{Disabled: true, TokensValidAfter: revokedAt.UTC()}},
		{name: "not found", give: UserState{NotFound: true}},
	}
	codec := cache.JSON[UserState]{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := codec.Marshal(tt.give)
			if err != nil {
				t.Fatalf("Marshal(%+v): %v", tt.give, err)
			}
			got, err := codec.Unmarshal(b)
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			if got != tt.give {
				t.Errorf("Unmarshal(Marshal(%+v)) = %+v", tt.give, got)
			}
		})
	}
}

func TestRevocationConfigValidate(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "sa.json")
	if err := os.WriteFile(keyFile, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		give     RevocationConfig
		wantErrs []string
	}{
		{name: "cache_ttl 0: no cache", give: RevocationConfig{Enabled: true, CacheTTL: 0}},
		{name: "zero value is off", give: configtest.Fill(RevocationConfig{}, DefaultFirebaseConfig().Revocation)},
		{name: "off ignores the rest", give: configtest.Fill(RevocationConfig{CacheTTL: -time.Second, CredentialsFile: filepath.Join(dir, "missing")}, DefaultFirebaseConfig().Revocation)},
		{name: "defaults", give: configtest.Fill(RevocationConfig{Enabled: true}, DefaultFirebaseConfig().Revocation)},
		{name: "all set", give: configtest.Fill(RevocationConfig{Enabled: true, CacheTTL: 5 * time.Minute, CredentialsFile: keyFile}, DefaultFirebaseConfig().Revocation)},
		{name: "bounds", give: configtest.Fill(RevocationConfig{Enabled: true, CacheTTL: time.Hour}, DefaultFirebaseConfig().Revocation)},
		{
			name:     "ttl too short",
			give:     configtest.Fill(RevocationConfig{Enabled: true, CacheTTL: time.Millisecond}, DefaultFirebaseConfig().Revocation),
			wantErrs: []string{"cache_ttl: 1ms must be 0 (no cache: one Admin API call per check) or between 1s and 1h0m0s"},
		},
		{
			name:     "everything wrong",
			give:     configtest.Fill(RevocationConfig{Enabled: true, CacheTTL: 2 * time.Hour, CredentialsFile: dir}, DefaultFirebaseConfig().Revocation),
			wantErrs: []string{"cache_ttl: ", "credentials_file: " + dir + " is not a regular file"},
		},
		{
			name:     "missing credentials file",
			give:     configtest.Fill(RevocationConfig{Enabled: true, CredentialsFile: filepath.Join(dir, "missing")}, DefaultFirebaseConfig().Revocation),
			wantErrs: []string{"credentials_file: stat " + filepath.Join(dir, "missing") + ": no such file or directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()

			var got []string
			for _, e := range configerr.List(err) {
				got = append(got, e.Error())
			}
			if len(got) != len(tt.wantErrs) {
				t.Fatalf("Validate() = %v, want %d problems %q", err, len(tt.wantErrs), tt.wantErrs)
			}
			for i, want := range tt.wantErrs {
				if !strings.HasPrefix(got[i], want) {
					t.Errorf("Validate() problem %d = %q, want prefix %q", i, got[i], want)
				}
			}
		})
	}
}

func TestRevocationReload(t *testing.T) {
	records := &fakeRecords{states: map[string]UserState{"alice": {}}}
	r := newTestRevocation(t, configtest.Fill(RevocationConfig{Enabled: true}, DefaultFirebaseConfig().Revocation), records, &revocationClock{t: revokedAt})
	ctx := revocationContext(t)
	id := firebaseIdentity("alice", revokedAt.Add(-time.Minute))
	if err := r.check(ctx, id); err != nil {
		t.Fatalf("check() = %v, want nil", err)
	}

	records.set("alice", UserState{TokensValidAfter: revokedAt})
	if err := r.reload(ctx, "alice"); err != nil {
		t.Fatalf("reload() = %v", err)
	}
	if err := r.check(ctx, id); !errors.Is(err, ErrRevoked) {
		t.Errorf("check() after reload = %v, want ErrRevoked", err)
	}
	if got := records.calls.Load(); got != 2 {
		t.Errorf("Admin API calls = %d, want 2 (the first check and the reload; the check after uses the reloaded state)", got)
	}

	if err := r.reload(ctx, "bob"); err != nil {
		t.Fatalf("reload(unknown user) = %v, want nil", err)
	}
	if err := r.check(ctx, firebaseIdentity("bob", revokedAt)); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("check() of a reloaded unknown user = %v, want ErrUserNotFound", err)
	}

	records.err = errors.New("admin api down")
	if err := r.reload(ctx, "alice"); !errors.Is(err, ErrRevocationUnavailable) {
		t.Errorf("reload() with the Admin API down = %v, want ErrRevocationUnavailable", err)
	}
}

func TestSessionStart(t *testing.T) {
	iat := time.Unix(1_700_000_100, 0)
	tests := []struct {
		name    string
		give    Identity
		want    time.Time
		wantErr error
	}{
		{name: "auth_time", give: firebaseIdentity("a", iat, "auth_time", json.Number("1700000000")), want: time.Unix(1_700_000_000, 0)},
		{name: "iat without auth_time", give: firebaseIdentity("a", iat), want: iat},
		{name: "neither", give: firebaseIdentity("a", time.Time{}), wantErr: ErrInvalid},
		{name: "auth_time not a number", give: firebaseIdentity("a", iat, "auth_time", "yesterday"), wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.give.SessionStart()
			if !got.Equal(tt.want) || !errors.Is(err, tt.wantErr) {
				t.Errorf("SessionStart() = %v, %v, want %v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// cache_ttl: 0 keeps no record: every check asks the Admin API, so that a
// revocation is seen by the very next request.
func TestRevocationCacheTTLZeroCachesNothing(t *testing.T) {
	clk := &revocationClock{t: revokedAt}
	records := &fakeRecords{states: map[string]UserState{"alice": {TokensValidAfter: revokedAt}}}
	r := newTestRevocation(t, RevocationConfig{Enabled: true, CacheTTL: 0}, records, clk)
	ctx := revocationContext(t)
	id := firebaseIdentity("alice", revokedAt.Add(time.Second))
	if err := r.check(ctx, id); err != nil {
		t.Fatalf("check() = %v, want nil", err)
	}
	records.set("alice", UserState{Disabled: true})
	if err := r.check(ctx, id); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("check() right after the user was disabled = %v, want ErrUserDisabled", err)
	}
	if got := records.calls.Load(); got != 2 {
		t.Errorf("2 checks made %d Admin API calls, want 2", got)
	}
}

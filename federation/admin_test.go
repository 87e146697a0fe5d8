package federation

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRepoChangeTokenBalance(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{TokenBalance: 7})
	if err != nil {
		t.Fatal(err)
	}
	missing := "0a0a0a0a-0000-4000-8000-00000000000f"
	steps := []struct {
		name         string
		giveID       string
		giveOp       BalanceOp
		giveN        int64
		wantBalance  int64
		wantPrevious int64
		wantErr      error
	}{
		{name: "set", giveOp: BalanceSet, giveN: 10, wantBalance: 10, wantPrevious: 7},
		{name: "set zero", giveOp: BalanceSet, giveN: 0, wantBalance: 0, wantPrevious: 10},
		{name: "increment", giveOp: BalanceIncrement, giveN: 5, wantBalance: 5, wantPrevious: 0},
		{name: "decrement", giveOp: BalanceDecrement, giveN: 2, wantBalance: 3, wantPrevious: 5},
		{name: "decrement below zero", giveOp: BalanceDecrement, giveN: 4, wantErr: ErrInsufficientBalance},
		{name: "set near the top", giveOp: BalanceSet, giveN: math.MaxInt64 - 1, wantBalance: math.MaxInt64 - 1, wantPrevious: 3},
		{name: "increment to the top", giveOp: BalanceIncrement, giveN: 1, wantBalance: math.MaxInt64, wantPrevious: math.MaxInt64 - 1},
		{name: "increment past the top", giveOp: BalanceIncrement, giveN: 1, wantErr: ErrBalanceOverflow},
		{name: "increment by the most past the top", giveOp: BalanceIncrement, giveN: math.MaxInt64, wantErr: ErrBalanceOverflow},
		{name: "set missing", giveID: missing, giveOp: BalanceSet, giveN: 1, wantErr: ErrNotFound},
		{name: "increment missing", giveID: missing, giveOp: BalanceIncrement, giveN: 1, wantErr: ErrNotFound},
		{name: "decrement missing", giveID: missing, giveOp: BalanceDecrement, giveN: 1, wantErr: ErrNotFound},
		{name: "decrement not a uuid", giveID: "nope", giveOp: BalanceDecrement, giveN: 1, wantErr: ErrNotFound},
	}
	for _, tt := range steps {
		id := tt.giveID
		if id == "" {
			id = u.ID
		}
		got, prev, err := r.ChangeTokenBalance(ctx, id, tt.giveOp, tt.giveN)
		if !errors.Is(err, tt.wantErr) || got.TokenBalance != tt.wantBalance || prev != tt.wantPrevious {
			t.Errorf("%s: ChangeTokenBalance = %d (was %d), %v, want %d (was %d), %v",
				tt.name, got.TokenBalance, prev, err, tt.wantBalance, tt.wantPrevious, tt.wantErr)
		}
	}
	for _, tt := range []struct {
		op BalanceOp
		n  int64
	}{{BalanceIncrement, 0}, {BalanceDecrement, 0}, {BalanceSet, -1}, {"double", 1}} {
		if _, _, err := r.ChangeTokenBalance(ctx, u.ID, tt.op, tt.n); err == nil {
			t.Errorf("ChangeTokenBalance(%s, %d) succeeded, want an error", tt.op, tt.n)
		}
	}
	if row, err := r.FindByID(ctx, u.ID); err != nil || row.TokenBalance != math.MaxInt64 {
		t.Errorf("balance after the refused changes = %d, %v, want %d", row.TokenBalance, err, int64(math.MaxInt64))
	}
}

// Concurrent sets and increments: every previous balance is one the row
// really had, so the changes form one order.
func TestRepoChangeTokenBalanceConcurrent(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.MaxConns = 20 }})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var mu sync.Mutex
	seen := make(map[int64]int64) // previous -> after
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			op, amount := BalanceIncrement, int64(1)
			if i%4 == 0 {
				op, amount = BalanceSet, int64(1000*(i+1))
			}
			got, prev, err := r.ChangeTokenBalance(ctx, u.ID, op, amount)
			if err != nil {
				t.Errorf("ChangeTokenBalance: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if _, dup := seen[prev]; dup && op == BalanceIncrement {
				t.Errorf("two increments saw the previous balance %d", prev)
			}
			seen[prev] = got.TokenBalance
		})
	}
	wg.Wait()
	// Following the chain from 0 visits every change once.
	cur, steps := int64(0), 0
	for steps < n {
		next, ok := seen[cur]
		if !ok {
			break
		}
		delete(seen, cur)
		cur, steps = next, steps+1
	}
	if steps != n {
		t.Errorf("the changes chain through %d of %d balances; left %v", steps, n, seen)
	}
	if row := f.find(t, u.ID); row.TokenBalance != cur {
		t.Errorf("final balance %d, want the chain's end %d", row.TokenBalance, cur)
	}
}

func TestRepoRestore(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{Email: "back@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SoftDelete(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	got, err := r.Restore(ctx, u.ID)
	if err != nil || !got.DeletedAt.IsZero() {
		t.Fatalf("Restore = %+v, %v, want a live row", got, err)
	}
	if _, err := f.s.EnsureUser(ctx, legacyID(u.ID)); err != nil {
		t.Errorf("EnsureUser of the restored row: %v", err)
	}
	again, err := r.Restore(ctx, u.ID)
	if err != nil || !again.UpdatedAt.Equal(got.UpdatedAt) {
		t.Errorf("Restore of a live row = %+v, %v, want it unchanged", again, err)
	}
	// Deleted, then its email taken by a new account: restoring is a
	// conflict.
	if _, err := r.SoftDelete(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create(ctx, NewUser{Email: "BACK@example.test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Restore(ctx, u.ID); !errors.Is(err, ErrConflict) || !errors.Is(err, ErrEmailTaken) {
		t.Errorf("Restore with the email taken = %v, want ErrConflict and ErrEmailTaken", err)
	}
	if _, err := r.Restore(ctx, "0a0a0a0a-0000-4000-8000-00000000000f"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Restore(missing) = %v, want ErrNotFound", err)
	}
}

// charge is an idempotent decrement of 1 whose answer is the balance
// after it, counting the runs.
func charge(f *fixture, ctx context.Context, id, key string, fp []byte, runs *atomic.Int32) (Answer, bool, error) {
	return f.s.Idempotent(ctx, id, key, fp, func(tx *Repo) (Answer, error) {
		runs.Add(1)
		u, err := tx.DecrementTokenBalance(ctx, id, 1)
		switch {
		case errors.Is(err, ErrInsufficientBalance):
			return Answer{Status: 409, Body: []byte("insufficient")}, nil
		case err != nil:
			return Answer{}, err
		}
		return Answer{Status: 200, Body: []byte{byte(u.TokenBalance)}}, nil
	})
}

func TestIdempotent(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.IdempotencyTTL = time.Hour }})
	ctx := testContext(t)
	u, err := f.s.Repo().Create(ctx, NewUser{TokenBalance: 3})
	if err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	steps := []struct {
		name         string
		giveKey      string
		giveFP       string
		advance      time.Duration
		wantStatus   int
		wantBody     byte
		wantReplayed bool
		wantErr      error
		wantRuns     int32
		wantBalance  int64
	}{
		{name: "first", giveKey: "k1", giveFP: "a", wantStatus: 200, wantBody: 2, wantRuns: 1, wantBalance: 2},
		{name: "retry", giveKey: "k1", giveFP: "a", wantStatus: 200, wantBody: 2, wantReplayed: true, wantRuns: 1, wantBalance: 2},
		{name: "other request, same key", giveKey: "k1", giveFP: "b", wantErr: ErrIdempotencyKeyReused, wantRuns: 1, wantBalance: 2},
		{name: "other key", giveKey: "k2", giveFP: "a", wantStatus: 200, wantBody: 1, wantRuns: 2, wantBalance: 1},
		{name: "59m later: still kept", giveKey: "k1", giveFP: "a", advance: 59 * time.Minute, wantStatus: 200, wantBody: 2, wantReplayed: true, wantRuns: 2, wantBalance: 1},
		{name: "1h later: expired, applied anew", giveKey: "k1", giveFP: "b", advance: time.Minute, wantStatus: 200, wantBody: 0, wantRuns: 3, wantBalance: 0},
		{name: "refusal is kept", giveKey: "k3", giveFP: "a", wantStatus: 409, wantBody: 'i', wantRuns: 4, wantBalance: 0},
		{name: "refusal replayed", giveKey: "k3", giveFP: "a", wantStatus: 409, wantBody: 'i', wantReplayed: true, wantRuns: 4, wantBalance: 0},
	}
	for _, st := range steps {
		f.clock.Add(st.advance)
		ans, replayed, err := charge(f, ctx, u.ID, st.giveKey, []byte(st.giveFP), &runs)
		var body byte
		if len(ans.Body) > 0 {
			body = ans.Body[0]
		}
		if !errors.Is(err, st.wantErr) || ans.Status != st.wantStatus || body != st.wantBody || replayed != st.wantReplayed {
			t.Errorf("%s: Idempotent = %d %q replayed %t, %v, want %d %q replayed %t, %v", st.name,
				ans.Status, ans.Body, replayed, err, st.wantStatus, []byte{st.wantBody}, st.wantReplayed, st.wantErr)
		}
		if got := runs.Load(); got != st.wantRuns {
			t.Errorf("%s: fn ran %d times in all, want %d", st.name, got, st.wantRuns)
		}
		if got := f.find(t, u.ID).TokenBalance; got != st.wantBalance {
			t.Errorf("%s: balance %d, want %d", st.name, got, st.wantBalance)
		}
	}

	// A failure rolls the change back and keeps no key: the retry runs.
	boom := errors.New("boom")
	_, _, err = f.s.Idempotent(ctx, u.ID, "k4", []byte("a"), func(tx *Repo) (Answer, error) {
		if _, err := tx.IncrementTokenBalance(ctx, u.ID, 5); err != nil {
			return Answer{}, err
		}
		return Answer{}, boom
	})
	if !errors.Is(err, boom) || f.find(t, u.ID).TokenBalance != 0 {
		t.Errorf("failed fn: %v, balance %d, want boom and 0", err, f.find(t, u.ID).TokenBalance)
	}
	if f.count(t, "SELECT count(*) FROM idempotency_keys WHERE key = 'k4'") != 0 {
		t.Error("a failed request kept its key")
	}

	for _, key := range []string{"", string(make([]byte, MaxIdempotencyKey+1))} {
		if _, _, err := charge(f, ctx, u.ID, key, []byte("a"), &runs); err == nil {
			t.Errorf("Idempotent with a key of %d bytes succeeded", len(key))
		}
	}
	if _, _, err := charge(f, ctx, "nope", "k", []byte("a"), &runs); !errors.Is(err, ErrNotFound) {
		t.Errorf("Idempotent(not a uuid) = %v, want ErrNotFound", err)
	}
}

// Concurrent requests with one key: one runs, the others get its answer.
func TestIdempotentConcurrent(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.MaxConns = 20 }})
	ctx := testContext(t)
	u, err := f.s.Repo().Create(ctx, NewUser{TokenBalance: 50})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	var runs, replays atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			ans, replayed, err := charge(f, ctx, u.ID, "same", []byte("a"), &runs)
			if err != nil || ans.Status != 200 || ans.Body[0] != 49 {
				t.Errorf("Idempotent = %d %v, %v, want 200 [49]", ans.Status, ans.Body, err)
			}
			if replayed {
				replays.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if runs.Load() != 1 || replays.Load() != n-1 {
		t.Errorf("runs %d, replays %d, want 1 and %d", runs.Load(), replays.Load(), n-1)
	}
	if got := f.find(t, u.ID).TokenBalance; got != 49 {
		t.Errorf("balance %d, want 49", got)
	}
}

func TestPruneIdempotencyKeys(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.IdempotencyTTL = time.Hour }})
	ctx := testContext(t)
	u, err := f.s.Repo().Create(ctx, NewUser{TokenBalance: 10})
	if err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	for _, k := range []string{"old-1", "old-2"} {
		if _, _, err := charge(f, ctx, u.ID, k, nil, &runs); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Add(30 * time.Second)
	if _, _, err := charge(f, ctx, u.ID, "new", nil, &runs); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		advance  time.Duration
		wantKeys int
	}{
		{name: "1h: the first two expired", advance: time.Hour - 30*time.Second, wantKeys: 1},
		{name: "45s later: the last expired, but pruned 45s ago", advance: 45 * time.Second, wantKeys: 1},
		{name: "1m after the last prune", advance: 15 * time.Second, wantKeys: 0},
	}
	for _, st := range steps {
		f.clock.Add(st.advance)
		f.s.pruneKeys(ctx)
		if got := f.count(t, "SELECT count(*) FROM idempotency_keys"); got != st.wantKeys {
			t.Errorf("%s: %d keys, want %d", st.name, got, st.wantKeys)
		}
	}
}

// mapProfiles answers from a map by uid and by email.
type mapProfiles map[string]Profile

func (p mapProfiles) ByUID(_ context.Context, uid string) (Profile, error) {
	if pr, ok := p[uid]; ok {
		return pr, nil
	}
	return Profile{}, ErrNotFound
}

func (p mapProfiles) ByEmail(_ context.Context, email string) (Profile, error) {
	return p.ByUID(context.Background(), email)
}

func TestRetryFederation(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: workerConfig})
	ctx := testContext(t)
	failed := f.failedRow(t, NewUser{Email: "late@example.test"})
	unverified := f.failedRow(t, NewUser{Email: "unverified@example.test"})
	active, err := f.s.Repo().Create(ctx, NewUser{})
	if err != nil {
		t.Fatal(err)
	}
	deleted := f.failedRow(t, NewUser{})
	if _, err := f.s.Repo().SoftDelete(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	profiles := mapProfiles{
		"late@example.test":       {UID: "fb-late", Email: "late@example.test", EmailVerified: true},
		"unverified@example.test": {UID: "fb-unv", Email: "unverified@example.test"},
	}
	tests := []struct {
		name       string
		giveID     string
		giveP      Profiles
		wantResult string
		wantUID    string
		wantStatus Status
		wantErr    error
	}{
		// Not due by the back-off: an admin's retry runs anyway.
		{name: "linked", giveID: failed.ID, giveP: profiles, wantResult: "linked", wantUID: "fb-late", wantStatus: StatusActive},
		{name: "not failed any more", giveID: failed.ID, giveP: profiles, wantErr: ErrNotFailed},
		{name: "still failing", giveID: unverified.ID, giveP: profiles, wantResult: "failed", wantStatus: StatusFailed},
		{name: "firebase down", giveID: unverified.ID, giveP: fakeProfiles{err: ErrFirebaseUnavailable}, wantErr: ErrFirebaseUnavailable},
		{name: "active", giveID: active.ID, giveP: profiles, wantErr: ErrNotFailed},
		{name: "soft-deleted", giveID: deleted.ID, giveP: profiles, wantErr: ErrNotFound},
		{name: "missing", giveID: "0a0a0a0a-0000-4000-8000-00000000000f", giveP: profiles, wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, res, err := f.s.RetryFederation(ctx, tt.giveID, tt.giveP)
			if !errors.Is(err, tt.wantErr) || res != tt.wantResult || u.FirebaseUID != tt.wantUID || u.FederationStatus != tt.wantStatus {
				t.Errorf("RetryFederation = %q %q %q, %v, want %q %q %q, %v", res, u.FirebaseUID, u.FederationStatus, err,
					tt.wantResult, tt.wantUID, tt.wantStatus, tt.wantErr)
			}
		})
	}
	if got := f.find(t, unverified.ID).SyncAttempts; got != 2 {
		t.Errorf("sync_attempts after a failed retry = %d, want 2", got)
	}
}

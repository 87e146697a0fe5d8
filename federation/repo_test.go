package federation

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestRepoCreateAndFind(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{
		FirebaseUID: "uid-1", Email: "Mixed@Case.example", Username: "mixed", UserType: "admin", TokenBalance: 5,
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !validUUID(u.ID) || u.FirebaseUID != "uid-1" || u.Email != "Mixed@Case.example" || u.Username != "mixed" ||
		u.UserType != "admin" || !u.IsActive || u.TokenBalance != 5 || u.FederationStatus != StatusActive ||
		u.CreatedAt.IsZero() || u.UpdatedAt.IsZero() || !u.DeletedAt.IsZero() || !u.LastLogin.IsZero() {
		t.Errorf("Create = %+v", u)
	}
	plain, err := r.Create(ctx, NewUser{ID: "0a0a0a0a-0000-4000-8000-000000000001", Inactive: true, FederationStatus: StatusSyncing})
	if err != nil {
		t.Fatalf("Create with id: %v", err)
	}
	if plain.ID != "0a0a0a0a-0000-4000-8000-000000000001" || plain.IsActive || plain.UserType != "user" ||
		plain.FederationStatus != StatusSyncing || plain.Email != "" || plain.Username != "" {
		t.Errorf("Create with id = %+v", plain)
	}

	tests := []struct {
		name    string
		find    func() (User, error)
		wantID  string
		wantErr error
	}{
		{name: "id", find: func() (User, error) { return r.FindByID(ctx, u.ID) }, wantID: u.ID},
		{name: "firebase uid", find: func() (User, error) { return r.FindByFirebaseUID(ctx, "uid-1") }, wantID: u.ID},
		{name: "email any case", find: func() (User, error) { return r.FindByEmail(ctx, "mixed@CASE.example") }, wantID: u.ID},
		{name: "username", find: func() (User, error) { return r.FindByUsername(ctx, "mixed") }, wantID: u.ID},
		{name: "id missing", find: func() (User, error) { return r.FindByID(ctx, "0a0a0a0a-0000-4000-8000-000000000002") }, wantErr: ErrNotFound},
		{name: "id not a uuid", find: func() (User, error) { return r.FindByID(ctx, "7") }, wantErr: ErrNotFound},
		{name: "firebase uid missing", find: func() (User, error) { return r.FindByFirebaseUID(ctx, "nobody") }, wantErr: ErrNotFound},
		{name: "email missing", find: func() (User, error) { return r.FindByEmail(ctx, "nobody@example.com") }, wantErr: ErrNotFound},
		{name: "username other case", find: func() (User, error) { return r.FindByUsername(ctx, "MIXED") }, wantID: u.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.find()
			if got.ID != tt.wantID || !errors.Is(err, tt.wantErr) {
				t.Errorf("find = %q, %v, want %q, %v", got.ID, err, tt.wantID, tt.wantErr)
			}
		})
	}
}

func TestRepoCreateConflicts(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	if _, err := r.Create(ctx, NewUser{FirebaseUID: "uid-1", Email: "one@example.com", Username: "one"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    NewUser
		wantErr error // besides ErrConflict
	}{
		{name: "firebase uid", give: NewUser{FirebaseUID: "uid-1"}},
		{name: "email, other case", give: NewUser{Email: "ONE@example.com"}, wantErr: ErrEmailTaken},
		{name: "username", give: NewUser{Username: "one"}, wantErr: ErrUsernameTaken},
		{name: "username, other case", give: NewUser{Username: "ONE"}, wantErr: ErrUsernameTaken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Create(ctx, tt.give)
			if !errors.Is(err, ErrConflict) || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Create(%+v) = %v, want ErrConflict and %v", tt.give, err, tt.wantErr)
			}
		})
	}
	if _, err := r.Create(ctx, NewUser{FederationStatus: StatusDegraded}); err == nil {
		t.Error("Create with status degraded succeeded, want an error: it is never stored")
	}
}

func TestRepoUpdate(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{Email: "old@example.com", Username: "old"})
	if err != nil {
		t.Fatal(err)
	}
	email, empty, admin, no, failed, three, reason := "new@example.com", "", "admin", false, StatusFailed, 3, "boom"
	synced := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	got, err := r.Update(ctx, u.ID, Changes{
		Email: &email, Username: &empty, UserType: &admin, IsActive: &no, FederationStatus: &failed,
		SyncAttempts: &three, LastSyncError: &reason, LastSyncedAt: &synced,
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got.Email != email || got.Username != "" || got.UserType != "admin" || got.IsActive ||
		got.FederationStatus != StatusFailed || got.SyncAttempts != 3 || got.LastSyncError != "boom" ||
		!got.LastSyncedAt.Equal(synced) || got.UpdatedAt.Before(u.UpdatedAt) {
		t.Errorf("Update = %+v", got)
	}
	// Nil fields stay; a zero time clears.
	var zero time.Time
	got, err = r.Update(ctx, u.ID, Changes{LastSyncedAt: &zero})
	if err != nil || got.Email != email || !got.LastSyncedAt.IsZero() {
		t.Errorf("Update(last synced zero) = %+v, %v", got, err)
	}
	if same, err := r.Update(ctx, u.ID, Changes{}); err != nil || same.ID != u.ID {
		t.Errorf("Update(no changes) = %+v, %v, want the row", same, err)
	}
	degraded := StatusDegraded
	if _, err := r.Update(ctx, u.ID, Changes{FederationStatus: &degraded}); err == nil {
		t.Error("Update(status degraded) succeeded, want an error")
	}
	if _, err := r.Update(ctx, "0a0a0a0a-0000-4000-8000-000000000009", Changes{Email: &email}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update(missing) = %v, want ErrNotFound", err)
	}
	other, err := r.Create(ctx, NewUser{Username: "taken"})
	if err != nil {
		t.Fatal(err)
	}
	taken := "taken"
	if _, err := r.Update(ctx, u.ID, Changes{Username: &taken}); !errors.Is(err, ErrConflict) {
		t.Errorf("Update(username of %s) = %v, want ErrConflict", other.ID, err)
	}
	takenUpper := "TAKEN"
	if _, err := r.Update(ctx, u.ID, Changes{Username: &takenUpper}); !errors.Is(err, ErrUsernameTaken) {
		t.Errorf("Update(username of %s in other case) = %v, want ErrUsernameTaken", other.ID, err)
	}
}

func TestRepoDelete(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{FirebaseUID: "uid-del", Email: "del@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	del, err := r.SoftDelete(ctx, u.ID)
	if err != nil || del.DeletedAt.IsZero() {
		t.Fatalf("SoftDelete = %+v, %v, want deleted_at set", del, err)
	}
	if _, err := r.SoftDelete(ctx, u.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("SoftDelete again = %v, want ErrNotFound", err)
	}
	if _, err := r.FindByEmail(ctx, "del@example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FindByEmail(soft-deleted) = %v, want ErrNotFound", err)
	}
	if got, err := r.FindByID(ctx, u.ID); err != nil || got.DeletedAt.IsZero() {
		t.Errorf("FindByID(soft-deleted) = %+v, %v, want the row with deleted_at", got, err)
	}
	// The email is free again.
	if _, err := r.Create(ctx, NewUser{Email: "DEL@example.com"}); err != nil {
		t.Errorf("Create with a soft-deleted row's email: %v", err)
	}
	if err := r.HardDelete(ctx, u.ID); err != nil {
		t.Fatalf("HardDelete: %v", err)
	}
	if _, err := r.FindByFirebaseUID(ctx, "uid-del"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FindByFirebaseUID(hard-deleted) = %v, want ErrNotFound", err)
	}
	if err := r.HardDelete(ctx, u.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("HardDelete again = %v, want ErrNotFound", err)
	}
}

func TestRepoUpdateLastLogin(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	got, err := r.UpdateLastLogin(ctx, u.ID, at)
	if err != nil || !got.LastLogin.Equal(at) || !got.UpdatedAt.After(u.UpdatedAt) {
		t.Errorf("UpdateLastLogin = %+v, %v, want last_login %v and updated_at moved past %v", got, err, at, u.UpdatedAt)
	}
}

func TestRepoTokenBalance(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{})
	if err != nil {
		t.Fatal(err)
	}
	missing := "0a0a0a0a-0000-4000-8000-00000000000f"
	steps := []struct {
		name        string
		do          func() (User, error)
		wantBalance int64
		wantErr     error
	}{
		{name: "set", do: func() (User, error) { return r.SetTokenBalance(ctx, u.ID, 10) }, wantBalance: 10},
		{name: "increment", do: func() (User, error) { return r.IncrementTokenBalance(ctx, u.ID, 5) }, wantBalance: 15},
		{name: "decrement", do: func() (User, error) { return r.DecrementTokenBalance(ctx, u.ID, 15) }, wantBalance: 0},
		{name: "decrement below zero", do: func() (User, error) { return r.DecrementTokenBalance(ctx, u.ID, 1) }, wantErr: ErrInsufficientBalance},
		{name: "set negative", do: func() (User, error) { return r.SetTokenBalance(ctx, u.ID, -1) }, wantErr: ErrInsufficientBalance},
		{name: "decrement missing", do: func() (User, error) { return r.DecrementTokenBalance(ctx, missing, 1) }, wantErr: ErrNotFound},
		{name: "increment missing", do: func() (User, error) { return r.IncrementTokenBalance(ctx, missing, 1) }, wantErr: ErrNotFound},
	}
	for _, tt := range steps {
		got, err := tt.do()
		if !errors.Is(err, tt.wantErr) || got.TokenBalance != tt.wantBalance {
			t.Errorf("%s = %d, %v, want %d, %v", tt.name, got.TokenBalance, err, tt.wantBalance, tt.wantErr)
		}
	}
	for _, n := range []int64{0, -3} {
		if _, err := r.DecrementTokenBalance(ctx, u.ID, n); err == nil {
			t.Errorf("DecrementTokenBalance(%d) succeeded, want an error", n)
		}
		if _, err := r.IncrementTokenBalance(ctx, u.ID, n); err == nil {
			t.Errorf("IncrementTokenBalance(%d) succeeded, want an error", n)
		}
	}
	if row, err := r.FindByID(ctx, u.ID); err != nil || row.TokenBalance != 0 {
		t.Errorf("balance after the refused changes = %d, %v, want 0", row.TokenBalance, err)
	}
}

func TestRepoDecrementConcurrent(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.MaxConns = 20 }})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{TokenBalance: 30})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var mu sync.Mutex
	ok, insufficient := 0, 0
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			got, err := r.DecrementTokenBalance(ctx, u.ID, 1)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && got.TokenBalance >= 0:
				ok++
			case errors.Is(err, ErrInsufficientBalance):
				insufficient++
			default:
				t.Errorf("DecrementTokenBalance = %d, %v", got.TokenBalance, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok != 30 || insufficient != n-30 {
		t.Errorf("decrements: %d succeeded, %d insufficient, want 30, %d", ok, insufficient, n-30)
	}
	if row, err := r.FindByID(ctx, u.ID); err != nil || row.TokenBalance != 0 {
		t.Errorf("final balance = %d, %v, want 0", row.TokenBalance, err)
	}
}

func TestRepoLink(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	legacy, err := r.Create(ctx, NewUser{Email: "legacy@example.com", FederationStatus: StatusFailed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.MarkFailed(ctx, legacy.ID, "earlier failure"); err != nil {
		t.Fatal(err)
	}
	got, err := r.Link(ctx, legacy.ID, "uid-linked")
	if err != nil {
		t.Fatalf("Link: %v", err)
	}
	if got.FirebaseUID != "uid-linked" || got.FederationStatus != StatusActive || got.SyncAttempts != 0 ||
		got.LastSyncError != "" || !got.LastSyncedAt.Equal(f.clock.Now()) {
		t.Errorf("Link = %+v, want linked, active, errors cleared", got)
	}
	if _, err := r.Link(ctx, legacy.ID, "uid-linked"); err != nil {
		t.Errorf("Link again = %v, want nil (idempotent)", err)
	}

	other, err := r.Create(ctx, NewUser{})
	if err != nil {
		t.Fatal(err)
	}
	disabled := StatusDisabled
	off, err := r.Create(ctx, NewUser{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Update(ctx, off.ID, Changes{FederationStatus: &disabled}); err != nil {
		t.Fatal(err)
	}
	gone, err := r.Create(ctx, NewUser{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SoftDelete(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		giveID     string
		giveUID    string
		wantErr    error
		wantStatus Status
	}{
		{name: "row linked to another uid", giveID: legacy.ID, giveUID: "uid-other", wantErr: ErrConflict},
		{name: "uid linked to another row", giveID: other.ID, giveUID: "uid-linked", wantErr: ErrConflict},
		{name: "disabled stays disabled", giveID: off.ID, giveUID: "uid-off", wantStatus: StatusDisabled},
		{name: "soft deleted", giveID: gone.ID, giveUID: "uid-gone", wantErr: ErrUserDisabled},
		{name: "missing", giveID: "0a0a0a0a-0000-4000-8000-00000000000e", giveUID: "uid-x", wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Link(ctx, tt.giveID, tt.giveUID)
			if !errors.Is(err, tt.wantErr) || got.FederationStatus != tt.wantStatus {
				t.Errorf("Link = %s, %v, want %q, %v", got.FederationStatus, err, tt.wantStatus, tt.wantErr)
			}
		})
	}
}

func TestRepoMarkFailedAndList(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	r := f.s.Repo()
	var ids []string
	for range 3 {
		u, err := r.Create(ctx, NewUser{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	if _, err := r.Create(ctx, NewUser{}); err != nil { // active: not listed
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := r.MarkFailed(ctx, id, "first"); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.MarkFailed(ctx, ids[0], "second")
	if err != nil || got.SyncAttempts != 2 || got.LastSyncError != "second" || got.FederationStatus != StatusFailed {
		t.Errorf("MarkFailed twice = %+v, %v, want 2 attempts, last error second", got, err)
	}
	if _, err := r.SoftDelete(ctx, ids[2]); err != nil { // deleted: not listed
		t.Fatal(err)
	}
	list, err := r.ListFailedFederations(ctx, 0)
	if err != nil {
		t.Fatalf("ListFailedFederations: %v", err)
	}
	// ids[0] changed last, so it comes last.
	if len(list) != 2 || list[0].ID != ids[1] || list[1].ID != ids[0] {
		t.Errorf("ListFailedFederations = %v, want [%s %s]", userIDs(list), ids[1], ids[0])
	}
	if list, err := r.ListFailedFederations(ctx, 1); err != nil || len(list) != 1 {
		t.Errorf("ListFailedFederations(1) = %d rows, %v, want 1", len(list), err)
	}
}

func userIDs(us []User) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

func TestWithTx(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := testContext(t)
	payer, err := f.s.Repo().Create(ctx, NewUser{TokenBalance: 10})
	if err != nil {
		t.Fatal(err)
	}
	errAbort := errors.New("abort")
	tests := []struct {
		name        string
		giveErr     error
		givePanic   bool
		wantBalance int64
		wantRows    int
	}{
		{name: "error rolls back", giveErr: errAbort, wantBalance: 10, wantRows: 1},
		{name: "panic rolls back", givePanic: true, wantBalance: 10, wantRows: 1},
		{name: "commit", wantBalance: 6, wantRows: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil && !tt.givePanic {
						t.Fatalf("panic: %v", p)
					}
				}()
				err = f.s.WithTx(ctx, func(tx *Repo) error {
					if _, err := tx.Create(ctx, NewUser{Email: "payee@example.com"}); err != nil {
						return err
					}
					if _, err := tx.DecrementTokenBalance(ctx, payer.ID, 4); err != nil {
						return err
					}
					if tt.givePanic {
						panic("in transaction")
					}
					return tt.giveErr
				})
			}()
			if !errors.Is(err, tt.giveErr) {
				t.Errorf("WithTx = %v, want %v", err, tt.giveErr)
			}
			row, err := f.s.Repo().FindByID(ctx, payer.ID)
			if err != nil || row.TokenBalance != tt.wantBalance {
				t.Errorf("balance = %d, %v, want %d", row.TokenBalance, err, tt.wantBalance)
			}
			if n := f.count(t, "SELECT count(*) FROM users"); n != tt.wantRows {
				t.Errorf("rows = %d, want %d", n, tt.wantRows)
			}
		})
	}
	// A failing statement inside aborts the whole transaction.
	err = f.s.WithTx(ctx, func(tx *Repo) error {
		if _, err := tx.IncrementTokenBalance(ctx, payer.ID, 100); err != nil {
			return err
		}
		_, err := tx.DecrementTokenBalance(ctx, payer.ID, 1000)
		return err
	})
	if !errors.Is(err, ErrInsufficientBalance) {
		t.Errorf("WithTx = %v, want ErrInsufficientBalance", err)
	}
	if row, err := f.s.Repo().FindByID(ctx, payer.ID); err != nil || row.TokenBalance != 6 {
		t.Errorf("balance after the failed transaction = %d, %v, want 6", row.TokenBalance, err)
	}
}

// TestRepoInvalidatesCache changes a cached row through each method and
// expects EnsureUser to see the change at once.
func TestRepoInvalidatesCache(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name   string
		change func(f *fixture, id string) error
		check  func(u User, err error) bool
	}{
		{name: "update", change: func(f *fixture, id string) error {
			_, err := f.s.Repo().Update(testContext(t), id, Changes{IsActive: &no})
			return err
		}, check: func(_ User, err error) bool { return errors.Is(err, ErrUserDisabled) }},
		{name: "update in transaction", change: func(f *fixture, id string) error {
			return f.s.WithTx(testContext(t), func(tx *Repo) error {
				_, err := tx.Update(testContext(t), id, Changes{IsActive: &yes, UserType: ptr("admin")})
				return err
			})
		}, check: func(u User, err error) bool { return err == nil && u.UserType == "admin" }},
		{name: "balance", change: func(f *fixture, id string) error {
			_, err := f.s.Repo().IncrementTokenBalance(testContext(t), id, 3)
			return err
		}, check: func(u User, err error) bool { return err == nil && u.TokenBalance == 3 }},
		{name: "mark failed", change: func(f *fixture, id string) error {
			_, err := f.s.Repo().MarkFailed(testContext(t), id, "x")
			return err
		}, check: func(u User, err error) bool { return err == nil && u.FederationStatus == StatusFailed }},
		{name: "link", change: func(f *fixture, id string) error {
			_, err := f.s.Repo().Link(testContext(t), id, "uid-cached")
			return err
		}, check: func(u User, err error) bool { return err == nil && u.FirebaseUID == "uid-cached" }},
		{name: "soft delete", change: func(f *fixture, id string) error {
			_, err := f.s.Repo().SoftDelete(testContext(t), id)
			return err
		}, check: func(_ User, err error) bool { return errors.Is(err, ErrUserDisabled) }},
		{name: "hard delete", change: func(f *fixture, id string) error {
			return f.s.Repo().HardDelete(testContext(t), id)
		}, check: func(_ User, err error) bool { return errors.Is(err, ErrUnknownUser) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{})
			ctx := testContext(t)
			u, err := f.s.Repo().Create(ctx, NewUser{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.s.EnsureUser(ctx, legacyID(u.ID)); err != nil { // cached
				t.Fatal(err)
			}
			if err := tt.change(f, u.ID); err != nil {
				t.Fatalf("change: %v", err)
			}
			if got, err := f.s.EnsureUser(ctx, legacyID(u.ID)); !tt.check(got, err) {
				t.Errorf("EnsureUser after the change = %+v, %v: the cached row was served", got, err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestRepoBalanceConcurrentMixed runs 200 increments and decrements at
// once: the balance never goes below zero, and it ends exactly where the
// successful changes say, so no update was lost.
func TestRepoBalanceConcurrentMixed(t *testing.T) {
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.MaxConns = 20 }})
	ctx := testContext(t)
	r := f.s.Repo()
	u, err := r.Create(ctx, NewUser{TokenBalance: 10})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var mu sync.Mutex
	incs, decs, refused := 0, 0, 0
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			var got User
			var err error
			if i%5 == 0 {
				got, err = r.IncrementTokenBalance(ctx, u.ID, 2)
			} else {
				got, err = r.DecrementTokenBalance(ctx, u.ID, 1)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && got.TokenBalance < 0:
				t.Errorf("balance went to %d", got.TokenBalance)
			case err == nil && i%5 == 0:
				incs++
			case err == nil:
				decs++
			case errors.Is(err, ErrInsufficientBalance):
				refused++
			default:
				t.Errorf("balance change #%d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	want := int64(10 + 2*incs - decs)
	row, err := r.FindByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if row.TokenBalance != want {
		t.Errorf("final balance = %d, want %d (10 + 2×%d increments − %d decrements): an update was lost", row.TokenBalance, want, incs, decs)
	}
	if incs != n/5 || refused == 0 || incs+decs+refused != n {
		t.Errorf("%d increments, %d decrements, %d refused; want every increment to succeed, some decrements refused, and %d changes in all", incs, decs, refused, n)
	}
	t.Logf("%d concurrent changes: %d increments, %d decrements, %d refused for insufficient balance; final %d", n, incs, decs, refused, row.TokenBalance)
}

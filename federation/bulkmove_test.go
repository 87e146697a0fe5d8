package federation

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/auth"
	"golang.org/x/crypto/bcrypt"
)

// moveFixture is a legacy table and the emulator, with rows in every case
// MoveLegacyAccounts tells apart.
type moveFixture struct {
	*fixture
	e        *emulator
	fresh    []string // ids of rows nobody moved yet
	verified string   // id of a row whose email is a verified Firebase user's
	fbUID    string   // that Firebase user
	unverif  string   // id of a row whose email is an unverified Firebase user's
	linked   string   // id of a row linked already
	resumed  string   // id of a row whose uid exists in Firebase, unlinked
	badHash  string   // id of a row whose hash is not bcrypt
	emails   map[string]string
}

func newMoveFixture(t *testing.T) *moveFixture {
	t.Helper()
	e := testEmulator(t)
	f := &moveFixture{fixture: legacyFixture(t), e: e, emails: map[string]string{}}
	ctx := testContext(t)
	h, err := bcrypt.GenerateFromPassword([]byte("old password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hash := string(h)
	tag := strings.ToLower(rand.Text())
	row := func(local string, verified bool, extra string) string {
		email := local + "-" + tag + "@example.test"
		id := f.legacyRow(t, email, hash, verified, extra)
		f.emails[id] = email
		// Whatever the test made of it in Firebase goes with it.
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := e.client.DeleteUser(ctx, id); err != nil && !auth.IsUserNotFound(err) {
				t.Errorf("DeleteUser(%s): %v", id, err)
			}
		})
		return id
	}
	for i := range 4 {
		f.fresh = append(f.fresh, row("fresh"+string(rune('a'+i)), i%2 == 0, ""))
	}
	var fbEmail string
	f.fbUID, fbEmail = e.newUser(t, fbUser{email: "verified@example.test", verified: true})
	f.verified = f.legacyRow(t, strings.ToUpper(fbEmail), hash, false, "")
	_, unEmail := e.newUser(t, fbUser{email: "unverified@example.test"})
	f.unverif = f.legacyRow(t, unEmail, hash, true, "")
	f.linked = row("linked", true, "firebase_uid = 'uid-linked-"+tag+"'")
	f.resumed = row("resumed", true, "")
	if _, err := e.client.CreateUser(ctx, (&auth.UserToCreate{}).UID(f.resumed).Email(f.emails[f.resumed])); err != nil {
		t.Fatal(err)
	}
	f.badHash = f.legacyRow(t, "md5-"+tag+"@example.test", "5f4dcc3b5aa765d61d8327deb882cf99", true, "")
	return f
}

func (f *moveFixture) opts(batch int) MoveOptions {
	return MoveOptions{Columns: legacyCols, Batch: batch}
}

// state is the row's firebase_uid and whether it still has a hash.
func (f *moveFixture) state(t *testing.T, id string) (uid string, hasHash bool) {
	t.Helper()
	err := f.s.pool.QueryRow(testContext(t), `SELECT coalesce(firebase_uid, ''), password_hash IS NOT NULL FROM users WHERE id = $1`, id).Scan(&uid, &hasHash)
	if err != nil {
		t.Fatal(err)
	}
	return uid, hasHash
}

func (f *moveFixture) firebaseUsers(t *testing.T) int {
	t.Helper()
	var ids []string
	ids = append(ids, f.fresh...)
	ids = append(ids, f.verified, f.unverif, f.linked, f.badHash)
	found, err := NewFirebaseImporter(f.e.client).Lookup(testContext(t), ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(found)
}

func TestMoveLegacyAccountsEmulator(t *testing.T) {
	f := newMoveFixture(t)
	ctx := testContext(t)
	im := NewFirebaseImporter(f.e.client)
	const unlinked = `SELECT count(*) FROM users WHERE firebase_uid IS NULL AND password_hash IS NOT NULL`
	before := f.count(t, unlinked)

	// Dry run: the same counts, nothing changed anywhere.
	opt := f.opts(3)
	opt.DryRun = true
	got, err := f.s.MoveLegacyAccounts(ctx, im, opt)
	want := MoveReport{Selected: 8, Imported: 4, Linked: 6, Skipped: 1, Failed: 1}
	if err != nil || got != want {
		t.Fatalf("dry run = %+v, %v, want %+v", got, err, want)
	}
	if n := f.count(t, unlinked); n != before {
		t.Errorf("dry run: %d unlinked rows with a hash, want %d", n, before)
	}
	if n := f.firebaseUsers(t); n != 0 {
		t.Errorf("dry run: %d Firebase users with row ids, want 0", n)
	}

	var batches []MoveReport
	var left []RowOutcome
	opt = f.opts(3)
	opt.Progress = func(r MoveReport) { batches = append(batches, r) }
	opt.Row = func(o RowOutcome) { left = append(left, o) }
	got, err = f.s.MoveLegacyAccounts(ctx, im, opt)
	if err != nil || got != want {
		t.Fatalf("MoveLegacyAccounts = %+v, %v, want %+v", got, err, want)
	}
	if len(batches) != 3 || batches[0].Batch != 1 || batches[2].Batch != 3 || batches[2].Selected != 2 {
		t.Errorf("batches = %+v, want 3 of 3, 3, 2 rows", batches)
	}
	for _, o := range left {
		for _, email := range f.emails {
			if strings.Contains(strings.ToLower(o.Reason), strings.ToLower(email)) {
				t.Errorf("reason %q names an email", o.Reason)
			}
		}
	}
	wantLeft := map[string]RowOutcome{
		f.unverif: {UserID: f.unverif, Reason: reasonUnverified},
		f.badHash: {UserID: f.badHash, Failed: true, Reason: reasonNotBcrypt},
	}
	if len(left) != len(wantLeft) {
		t.Errorf("rows left = %+v, want %+v", left, wantLeft)
	}
	for _, o := range left {
		if o != wantLeft[o.UserID] {
			t.Errorf("row left = %+v, want %+v", o, wantLeft[o.UserID])
		}
	}

	for _, id := range append(append([]string{}, f.fresh...), f.resumed) {
		uid, hasHash := f.state(t, id)
		if uid != id || hasHash {
			t.Errorf("row %s: firebase_uid %q, hash kept %v; want its id and no hash", id, uid, hasHash)
		}
		u, err := f.e.client.GetUser(ctx, id)
		if err != nil {
			t.Errorf("GetUser(%s): %v", id, err)
			continue
		}
		if u.Email != strings.ToLower(f.emails[id]) {
			t.Errorf("Firebase user %s has email %q, want %q", id, u.Email, f.emails[id])
		}
	}
	for i, id := range f.fresh {
		if u, err := f.e.client.GetUser(ctx, id); err == nil && u.EmailVerified != (i%2 == 0) {
			t.Errorf("Firebase user %s: email verified %v, want %v", id, u.EmailVerified, i%2 == 0)
		}
	}
	if uid, hasHash := f.state(t, f.verified); uid != f.fbUID || hasHash {
		t.Errorf("row with a verified Firebase email: firebase_uid %q, hash kept %v; want %q, no hash", uid, hasHash, f.fbUID)
	}
	if uid, hasHash := f.state(t, f.unverif); uid != "" || !hasHash {
		t.Errorf("row with an unverified Firebase email: firebase_uid %q, hash kept %v; want unlinked with its hash", uid, hasHash)
	}
	if _, err := f.e.client.GetUser(ctx, f.linked); !auth.IsUserNotFound(err) {
		t.Errorf("GetUser(row linked before) = %v, want not found: it was not selected", err)
	}

	// A second run moves nothing: the rows left are left again.
	got, err = f.s.MoveLegacyAccounts(ctx, im, f.opts(1000))
	want = MoveReport{Selected: 2, Skipped: 1, Failed: 1}
	if err != nil || got != want {
		t.Errorf("second run = %+v, %v, want %+v", got, err, want)
	}
}

func TestMoveLegacyAccountsLimit(t *testing.T) {
	f := newMoveFixture(t)
	ctx := testContext(t)
	opt := f.opts(3)
	opt.Limit = 4
	got, err := f.s.MoveLegacyAccounts(ctx, NewFirebaseImporter(f.e.client), opt)
	if err != nil || got.Selected != 4 {
		t.Errorf("MoveLegacyAccounts(limit 4) = %+v, %v, want 4 rows selected", got, err)
	}
}

// Two runs never overlap: the second is refused at once while the first
// holds the lock, and runs once it is released.
func TestMoveLegacyAccountsLocked(t *testing.T) {
	f := legacyFixture(t)
	ctx := testContext(t)
	unlock, err := f.s.lockMove(ctx)
	if err != nil {
		t.Fatal(err)
	}
	im := fakeImporter{}
	if _, err := f.s.MoveLegacyAccounts(ctx, im, MoveOptions{Columns: legacyCols, Batch: 10}); !errors.Is(err, ErrMoveRunning) {
		t.Errorf("MoveLegacyAccounts while another run holds the lock = %v, want ErrMoveRunning", err)
	}
	unlock()

	// A second run started while the first is importing is refused; the
	// first goes on.
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	f.legacyRow(t, "first@example.test", string(h), false, "")
	var second error
	im.onImport = func([]ImportAccount) {
		_, second = f.s.MoveLegacyAccounts(ctx, fakeImporter{}, MoveOptions{Columns: legacyCols, Batch: 10})
	}
	got, err := f.s.MoveLegacyAccounts(ctx, im, MoveOptions{Columns: legacyCols, Batch: 10})
	if want := (MoveReport{Selected: 1, Imported: 1, Linked: 1}); err != nil || got != want {
		t.Errorf("first run = %+v, %v, want %+v", got, err, want)
	}
	if !errors.Is(second, ErrMoveRunning) {
		t.Errorf("second run during the first = %v, want ErrMoveRunning", second)
	}
	if _, err := f.s.MoveLegacyAccounts(ctx, fakeImporter{}, MoveOptions{Columns: legacyCols, Batch: 10}); err != nil {
		t.Errorf("MoveLegacyAccounts after the first run ended = %v", err)
	}
}

// fakeImporter knows no Firebase user and refuses the imports of refuse.
type fakeImporter struct {
	refuse   map[int]string
	onImport func([]ImportAccount)
}

func (fakeImporter) Lookup(context.Context, []string, []string) ([]Profile, error) { return nil, nil }
func (f fakeImporter) Import(_ context.Context, a []ImportAccount) (map[int]string, error) {
	if f.onImport != nil {
		f.onImport(a)
	}
	return f.refuse, nil
}

// A refused import fails the row, and the reason Firebase gives never
// carries the email on; an email the SDK would refuse (and quote) fails
// its row before any call.
func TestMoveLegacyAccountsImportRefused(t *testing.T) {
	f := legacyFixture(t)
	ctx := testContext(t)
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	id := f.legacyRow(t, "Refused@Example.test", string(h), false, "")
	malformed := f.legacyRow(t, "nobody@", string(h), false, "")
	var left []RowOutcome
	im := fakeImporter{refuse: map[int]string{0: "email refused@example.TEST is invalid"}}
	got, err := f.s.MoveLegacyAccounts(ctx, im, MoveOptions{Columns: legacyCols, Batch: 10, Row: func(o RowOutcome) { left = append(left, o) }})
	want := MoveReport{Selected: 2, Failed: 2}
	if err != nil || got != want {
		t.Errorf("MoveLegacyAccounts = %+v, %v, want %+v", got, err, want)
	}
	wantLeft := map[string]RowOutcome{
		id:        {UserID: id, Failed: true, Reason: reasonImportRejected + "email <email> is invalid"},
		malformed: {UserID: malformed, Failed: true, Reason: reasonBadEmail},
	}
	if len(left) != len(wantLeft) {
		t.Errorf("rows left = %+v, want %+v", left, wantLeft)
	}
	for _, o := range left {
		if o != wantLeft[o.UserID] {
			t.Errorf("row left = %+v, want %+v", o, wantLeft[o.UserID])
		}
	}
	if uid, _ := (&moveFixture{fixture: f}).state(t, id); uid != "" {
		t.Errorf("refused row linked to %q", uid)
	}
}

// A sign-in that moves an account while the bulk move imports it links it
// once; the bulk move then leaves the row as the sign-in linked it.
func TestMoveLegacyAccountsRacesLazyMove(t *testing.T) {
	f := legacyFixture(t)
	ctx := testContext(t)
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	id := f.legacyRow(t, "race@example.test", string(h), false, "")
	im := fakeImporter{onImport: func([]ImportAccount) {
		if _, err := f.s.Repo().CompleteMigration(ctx, legacyCols, id, id, false); err != nil {
			t.Errorf("lazy CompleteMigration: %v", err)
		}
	}}
	var left []RowOutcome
	got, err := f.s.MoveLegacyAccounts(ctx, im, MoveOptions{Columns: legacyCols, Batch: 10, Row: func(o RowOutcome) { left = append(left, o) }})
	want := MoveReport{Selected: 1, Imported: 1, Skipped: 1}
	if err != nil || got != want {
		t.Errorf("MoveLegacyAccounts = %+v, %v, want %+v", got, err, want)
	}
	if len(left) != 1 || left[0].Reason != reasonChanged {
		t.Errorf("rows left = %+v, want one %q", left, reasonChanged)
	}
	if uid, hasHash := (&moveFixture{fixture: f}).state(t, id); uid != id || hasHash {
		t.Errorf("row: firebase_uid %q, hash kept %v; want %q once, no hash", uid, hasHash, id)
	}
}

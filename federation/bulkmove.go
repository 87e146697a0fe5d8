package federation

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"firebase.google.com/go/v4/auth"
	"firebase.google.com/go/v4/auth/hash"
	"github.com/jackc/pgx/v5"
)

// MaxMoveBatch is the largest batch MoveLegacyAccounts takes: the most
// users Firebase imports in one call.
const MaxMoveBatch = 1000

// ErrMoveRunning: another bulk move holds the schema's lock.
var ErrMoveRunning = errors.New("another migrate-users run holds the lock")

// ImportAccount is a legacy account to create in Firebase with its
// password hash as it is, so that its user keeps the password.
type ImportAccount struct {
	UID           string
	Email         string
	EmailVerified bool
	DisplayName   string
	// PasswordHash is a bcrypt hash ($2a$, $2b$, $2y$).
	PasswordHash string
}

// Importer is the Firebase side of MoveLegacyAccounts, the seam around the
// Admin SDK's batch lookup and user import. Implementations must be safe
// for concurrent use.
type Importer interface {
	// Lookup returns the Firebase users that have one of the uids or one
	// of the emails; users not found are simply absent.
	Lookup(ctx context.Context, uids, emails []string) ([]Profile, error)
	// Import creates the accounts (at most MaxMoveBatch) and returns,
	// for each one Firebase refused, its index and the reason. An error
	// means none was imported.
	Import(ctx context.Context, accounts []ImportAccount) (map[int]string, error)
}

// NewFirebaseImporter returns the Importer backed by the Admin SDK client.
// Firebase's import skips its uniqueness checks of uid and email, which
// is why MoveLegacyAccounts looks both up first.
func NewFirebaseImporter(client *auth.Client) Importer { return firebaseImporter{client} }

type firebaseImporter struct{ client *auth.Client }

// maxLookup is the most identifiers one Firebase batch lookup takes.
const maxLookup = 100

// Lookup implements Importer.
func (f firebaseImporter) Lookup(ctx context.Context, uids, emails []string) ([]Profile, error) {
	ids := make([]auth.UserIdentifier, 0, len(uids)+len(emails))
	for _, u := range uids {
		ids = append(ids, auth.UIDIdentifier{UID: u})
	}
	for _, e := range emails {
		ids = append(ids, auth.EmailIdentifier{Email: e})
	}
	var out []Profile
	for len(ids) > 0 {
		n := min(len(ids), maxLookup)
		res, err := f.client.GetUsers(ctx, ids[:n])
		if err != nil {
			return nil, fmt.Errorf("look up firebase users: %w", err)
		}
		for _, u := range res.Users {
			out = append(out, Profile{UID: u.UID, Email: u.Email, EmailVerified: u.EmailVerified, DisplayName: u.DisplayName, Disabled: u.Disabled})
		}
		ids = ids[n:]
	}
	return out, nil
}

// Import implements Importer.
func (f firebaseImporter) Import(ctx context.Context, accounts []ImportAccount) (map[int]string, error) {
	users := make([]*auth.UserToImport, len(accounts))
	for i, a := range accounts {
		u := (&auth.UserToImport{}).UID(a.UID).Email(a.Email).EmailVerified(a.EmailVerified).PasswordHash([]byte(a.PasswordHash))
		if a.DisplayName != "" {
			u = u.DisplayName(a.DisplayName)
		}
		users[i] = u
	}
	res, err := f.client.ImportUsers(ctx, users, auth.WithHash(hash.Bcrypt{}))
	if err != nil {
		return nil, fmt.Errorf("import firebase users: %w", err)
	}
	failed := make(map[int]string, len(res.Errors))
	for _, e := range res.Errors {
		failed[e.Index] = e.Reason
	}
	return failed, nil
}

// MoveOptions configures MoveLegacyAccounts.
type MoveOptions struct {
	// Columns are the legacy columns, as for the lazy move.
	Columns LegacyColumns
	// KeepHash keeps the hash of a linked account, as for the lazy move.
	KeepHash bool
	// Batch is the number of rows read, looked up and imported together,
	// 1..MaxMoveBatch.
	Batch int
	// Limit bounds the rows looked at; 0 means all.
	Limit int
	// DryRun looks everything up and counts, but imports and links
	// nothing.
	DryRun bool
	// Progress, when not nil, receives the report of each batch.
	Progress func(MoveReport)
	// Row, when not nil, receives every row not moved: skipped or failed,
	// with the reason (never an email nor a hash).
	Row func(RowOutcome)
}

// MoveReport counts the outcome of a batch, or of the whole run.
type MoveReport struct {
	Batch    int // 1-based; 0 in the total
	Selected int // rows read
	Imported int // Firebase users created
	Linked   int // rows linked, imported or to an existing Firebase user
	Skipped  int // rows left as they are, for a reason
	Failed   int // rows whose move failed
}

func (r *MoveReport) add(o MoveReport) {
	r.Selected += o.Selected
	r.Imported += o.Imported
	r.Linked += o.Linked
	r.Skipped += o.Skipped
	r.Failed += o.Failed
}

// RowOutcome is a row MoveLegacyAccounts skipped or could not move.
type RowOutcome struct {
	UserID string
	Failed bool // else skipped
	Reason string
}

// Reasons for rows left alone.
const (
	reasonMoveNoEmail    = "no email: a Firebase password user needs one"
	reasonDisabled       = "account disabled"
	reasonNotBcrypt      = "password hash is not bcrypt"
	reasonBadEmail       = "email is malformed: Firebase needs one @ with text on both sides"
	reasonUnverified     = "email belongs to a Firebase user whose email is not verified"
	reasonLinkedElse     = "email belongs to a Firebase user linked to another account"
	reasonChanged        = "row changed meanwhile (linked or deleted)"
	reasonImportRejected = "firebase refused the import: "
)

// MoveLegacyAccounts moves the accounts of the old service that have a
// password hash and no Firebase uid to Firebase in batches, as the lazy
// move at sign-in does, without waiting for the sign-in: each becomes a
// Firebase user whose uid is its row id, with its email, verified-email
// state, username as display name and password hash as it is, and is
// linked with CompleteMigration (the hash cleared unless KeepHash).
//
// A row whose uid exists in Firebase already (an earlier run or a sign-in
// created it, and the link did not follow) is linked to it. A row whose
// email belongs to another Firebase user is linked to that user only when
// Firebase says its email is verified, as EnsureUser links; otherwise it
// is skipped. Disabled rows and rows without an email are skipped; a
// hash that is not bcrypt, or an email the Admin SDK refuses, fails.
//
// It holds a PostgreSQL advisory lock (one per schema) and returns
// ErrMoveRunning at once when another run holds it. Every link is the
// conditional UPDATE of CompleteMigration, so a sign-in moving the same
// account meanwhile links it once. Linked rows are never read again: a
// second run moves nothing. It returns the totals; an error stops the run
// after the batches reported.
func (s *Store) MoveLegacyAccounts(ctx context.Context, im Importer, opt MoveOptions) (MoveReport, error) {
	const op = "move legacy accounts"
	var total MoveReport
	if err := opt.Columns.Validate(); err != nil {
		return total, fmt.Errorf("%s: %w", op, err)
	}
	if opt.Batch < 1 || opt.Batch > MaxMoveBatch {
		return total, fmt.Errorf("%s: batch %d is outside 1..%d", op, opt.Batch, MaxMoveBatch)
	}
	if opt.Limit < 0 {
		return total, fmt.Errorf("%s: limit %d is negative", op, opt.Limit)
	}
	unlock, err := s.lockMove(ctx)
	if err != nil {
		return total, fmt.Errorf("%s: %w", op, err)
	}
	defer unlock()

	after := "00000000-0000-0000-0000-000000000000"
	for n := 1; ; n++ {
		size := opt.Batch
		if opt.Limit > 0 {
			size = min(size, opt.Limit-total.Selected)
		}
		if size <= 0 {
			return total, nil
		}
		rows, err := s.legacyBatch(ctx, opt.Columns, after, size)
		if err != nil {
			return total, fmt.Errorf("%s: %w", op, err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		after = rows[len(rows)-1].User.ID
		rep, err := s.moveBatch(ctx, im, opt, rows)
		rep.Batch = n
		total.add(rep)
		if opt.Progress != nil {
			opt.Progress(rep)
		}
		if err != nil {
			return total, fmt.Errorf("%s: batch %d: %w", op, n, err)
		}
	}
}

// moveBatch moves one batch of rows.
func (s *Store) moveBatch(ctx context.Context, im Importer, opt MoveOptions, rows []LegacyAccount) (MoveReport, error) {
	rep := MoveReport{Selected: len(rows)}
	leave := func(id string, failed bool, reason string) {
		if failed {
			rep.Failed++
		} else {
			rep.Skipped++
		}
		if opt.Row != nil {
			opt.Row(RowOutcome{UserID: id, Failed: failed, Reason: reason})
		}
	}
	var candidates []LegacyAccount
	var uids, emails []string
	for _, a := range rows {
		switch {
		case a.User.Email == "":
			leave(a.User.ID, false, reasonMoveNoEmail)
		case a.User.Disabled():
			leave(a.User.ID, false, reasonDisabled)
		case !isBcrypt(a.PasswordHash):
			leave(a.User.ID, true, reasonNotBcrypt)
		case !firebaseEmail(a.User.Email):
			// The SDK refuses the whole lookup or import for one such
			// email, and quotes it.
			leave(a.User.ID, true, reasonBadEmail)
		default:
			candidates = append(candidates, a)
			uids = append(uids, a.User.ID)
			emails = append(emails, strings.ToLower(a.User.Email))
		}
	}
	if len(candidates) == 0 {
		return rep, nil
	}
	found, err := im.Lookup(ctx, uids, emails)
	if err != nil {
		return rep, err
	}
	byUID := make(map[string]Profile, len(found))
	byEmail := make(map[string]Profile, len(found))
	for _, p := range found {
		byUID[p.UID] = p
		if p.Email != "" {
			byEmail[strings.ToLower(p.Email)] = p
		}
	}

	// link links a row to uid and counts it; a row linked or deleted
	// meanwhile is skipped, a uid linked to another row too.
	link := func(a LegacyAccount, uid, conflict string) error {
		if opt.DryRun {
			rep.Linked++
			return nil
		}
		_, err := s.Repo().CompleteMigration(ctx, opt.Columns, a.User.ID, uid, opt.KeepHash)
		switch {
		case err == nil:
			rep.Linked++
		case errors.Is(err, ErrNotFound):
			leave(a.User.ID, false, reasonChanged)
		case errors.Is(err, ErrConflict):
			leave(a.User.ID, false, conflict)
		case errors.Is(err, ErrUnavailable), ctx.Err() != nil:
			return err
		default:
			leave(a.User.ID, true, "link: "+err.Error())
		}
		return nil
	}

	var imports []ImportAccount
	var imported []LegacyAccount
	for _, a := range candidates {
		if _, ok := byUID[a.User.ID]; ok {
			// Created by an earlier run or a sign-in; the link did not
			// follow.
			if err := link(a, a.User.ID, reasonLinkedElse); err != nil {
				return rep, err
			}
			continue
		}
		if p, ok := byEmail[strings.ToLower(a.User.Email)]; ok {
			if !p.EmailVerified {
				leave(a.User.ID, false, reasonUnverified)
				continue
			}
			if err := link(a, p.UID, reasonLinkedElse); err != nil {
				return rep, err
			}
			continue
		}
		imports = append(imports, ImportAccount{
			UID: a.User.ID, Email: a.User.Email, EmailVerified: a.EmailVerified,
			DisplayName: a.User.Username, PasswordHash: a.PasswordHash,
		})
		imported = append(imported, a)
	}
	if len(imports) == 0 {
		return rep, nil
	}
	if opt.DryRun {
		rep.Imported += len(imports)
		rep.Linked += len(imports)
		return rep, nil
	}
	refused, err := im.Import(ctx, imports)
	if err != nil {
		return rep, err
	}
	for i, a := range imported {
		if reason, ok := refused[i]; ok {
			leave(a.User.ID, true, reasonImportRejected+redact(reason, a.User.Email))
			continue
		}
		rep.Imported++
		if err := link(a, a.User.ID, reasonLinkedElse); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// redact keeps an email out of a reason Firebase wrote.
func redact(reason, email string) string {
	if email == "" {
		return reason
	}
	lower := strings.ToLower(reason)
	e := strings.ToLower(email)
	var b strings.Builder
	for {
		i := strings.Index(lower, e)
		if i < 0 {
			b.WriteString(reason)
			return b.String()
		}
		b.WriteString(reason[:i])
		b.WriteString("<email>")
		reason, lower = reason[i+len(e):], lower[i+len(e):]
	}
}

// firebaseEmail reports whether the Admin SDK accepts email.
func firebaseEmail(email string) bool {
	local, domain, ok := strings.Cut(email, "@")
	return ok && local != "" && domain != "" && !strings.Contains(domain, "@")
}

// isBcrypt reports whether h looks like a bcrypt hash Firebase imports.
func isBcrypt(h string) bool {
	return len(h) == 60 && (strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$"))
}

// legacyBatch returns up to limit live legacy accounts with a hash and no
// Firebase uid whose id is above after, in id order.
func (s *Store) legacyBatch(ctx context.Context, cols LegacyColumns, after string, limit int) ([]LegacyAccount, error) {
	hash := "u." + pgx.Identifier{cols.PasswordHash}.Sanitize()
	verified := "false"
	if cols.EmailVerified != "" {
		verified = "coalesce(u." + pgx.Identifier{cols.EmailVerified}.Sanitize() + ", false)"
	}
	sql := `SELECT ` + userColumns + `, ` + hash + `::text, ` + verified + ` FROM users u
	WHERE u.deleted_at IS NULL AND u.firebase_uid IS NULL AND ` + hash + ` IS NOT NULL AND u.id > $1::uuid
	ORDER BY u.id LIMIT $2`
	var out []LegacyAccount
	err := s.Repo().run(ctx, "list legacy accounts", func(ctx context.Context, q querier) error {
		rows, err := q.Query(ctx, sql, after, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (LegacyAccount, error) {
			var a LegacyAccount
			var err error
			a.User, err = scanUser(row, &a.PasswordHash, &a.EmailVerified)
			return a, err
		})
		return err
	})
	return out, err
}

// lockMove takes the schema's bulk-move lock on a connection of its own,
// held until the returned function is called.
func (s *Store) lockMove(ctx context.Context) (func(), error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock: acquire connection: %w", translate(ctx, err))
	}
	key := moveLockKey(s.cfg.Schema)
	var got bool
	qctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	err = c.QueryRow(qctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got)
	cancel()
	if err != nil {
		c.Release()
		return nil, fmt.Errorf("lock: %w", translate(ctx, err))
	}
	if !got {
		c.Release()
		return nil, ErrMoveRunning
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.QueryTimeout)
		defer cancel()
		if _, err := c.Exec(uctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			// Closing the session releases the lock.
			_ = c.Conn().Close(uctx)
		}
		c.Release()
	}, nil
}

// moveLockKey is the advisory lock key of the schema's bulk move.
func moveLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("authgate.federation.migrate-users:" + schema))
	return int64(h.Sum64())
}

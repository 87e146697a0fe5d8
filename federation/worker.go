package federation

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// Worker defaults and bounds.
const (
	defaultWorkerInterval    = time.Minute
	defaultWorkerBatchSize   = 100
	defaultWorkerMaxAttempts = 10
	defaultWorkerBackoffBase = time.Minute
	defaultWorkerBackoffMax  = time.Hour

	minWorkerInterval    = time.Second
	maxWorkerInterval    = 24 * time.Hour
	maxWorkerBatchSize   = 10_000
	maxWorkerMaxAttempts = 100
	minWorkerBackoff     = time.Second
	maxWorkerBackoff     = 30 * 24 * time.Hour
)

// WorkerConfig configures the worker that retries failed federations (the
// yaml key "federation.worker"); see Store.RunWorker.
type WorkerConfig struct {
	// Enabled runs the worker. Off by default. It needs Firebase
	// (verify.firebase) to read user records from.
	Enabled bool `yaml:"enabled"`
	// Interval is how often each replica tries to take the worker's lock
	// and retry the failures that are due. Default 1m.
	Interval time.Duration `yaml:"interval"`
	// BatchSize bounds the rows retried per round. Default 100.
	BatchSize int `yaml:"batch_size"`
	// MaxAttempts is the sync_attempts at which a row is no longer
	// retried: it stays failed, with its last error, until an admin links
	// it or resets sync_attempts. Default 10.
	MaxAttempts int `yaml:"max_attempts"`
	// BackoffBase is the wait after a row's first failed attempt; it
	// doubles with each further attempt, up to BackoffMax. Default 1m.
	BackoffBase time.Duration `yaml:"backoff_base"`
	// BackoffMax caps the wait between attempts. Default 1h.
	BackoffMax time.Duration `yaml:"backoff_max"`
}

// DefaultWorkerConfig returns the worker's defaults (disabled).
func DefaultWorkerConfig() WorkerConfig {
	return WorkerConfig{
		Interval:    defaultWorkerInterval,
		BatchSize:   defaultWorkerBatchSize,
		MaxAttempts: defaultWorkerMaxAttempts,
		BackoffBase: defaultWorkerBackoffBase,
		BackoffMax:  defaultWorkerBackoffMax,
	}
}

// Validate reports every problem, each prefixed with its key. A disabled
// worker is valid.
func (c WorkerConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.Interval < minWorkerInterval || c.Interval > maxWorkerInterval {
		errs = append(errs, fmt.Errorf("interval: must be between %s and %s", minWorkerInterval, maxWorkerInterval))
	}
	if c.BatchSize < 1 || c.BatchSize > maxWorkerBatchSize {
		errs = append(errs, fmt.Errorf("batch_size: must be between 1 and %d", maxWorkerBatchSize))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > maxWorkerMaxAttempts {
		errs = append(errs, fmt.Errorf("max_attempts: must be between 1 and %d", maxWorkerMaxAttempts))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"backoff_base", c.BackoffBase}, {"backoff_max", c.BackoffMax}} {
		if d.v < minWorkerBackoff || d.v > maxWorkerBackoff {
			errs = append(errs, fmt.Errorf("%s: must be between %s and %s", d.key, minWorkerBackoff, maxWorkerBackoff))
		}
	}
	if c.BackoffMax < c.BackoffBase {
		errs = append(errs, errors.New("backoff_max: must not be less than backoff_base"))
	}
	return errors.Join(errs...)
}

// Reasons the worker records in last_sync_error: a closed set, never an
// email or a Firebase error text.
const (
	reasonNoEmail          = "retry: account has no email to match a firebase user"
	reasonNoFirebaseUser   = "retry: no firebase user has the account's email"
	reasonEmailUnverified  = "retry: firebase user's email not verified"
	reasonEmailDisabled    = "retry: firebase user with the account's email is disabled"
	reasonUIDTaken         = "retry: firebase user is linked to another account"
	reasonLinkedUserGone   = "retry: linked firebase user not found"
	reasonLookupFailed     = "retry: firebase lookup failed"
	reasonFirebaseDisabled = "firebase user disabled"
)

const (
	// The rows due for a retry, the longest waiting first. The wait after
	// attempt n (n ≥ 1) is base·2^(n-1), capped; it runs from the last
	// attempt (last_synced_at, which MarkFailed sets), or from the last
	// change for a row marked failed some other way. The exponent is
	// bounded so that the power cannot overflow.
	sqlListDue = `SELECT ` + userColumns + ` FROM users u
	WHERE u.federation_status = 'failed' AND u.deleted_at IS NULL AND u.sync_attempts < $1
	AND coalesce(u.last_synced_at, u.updated_at)
		+ least($2::float8 * power(2::float8, least(greatest(u.sync_attempts - 1, 0), 60)), $3::float8)
		* interval '1 microsecond' <= $4
	ORDER BY coalesce(u.last_synced_at, u.updated_at), u.id
	LIMIT $5`

	sqlLockByID = sqlFindByID + ` FOR UPDATE`
)

// runResult is the outcome of a worker round, the label of
// federation_worker_runs_total.
type runResult int

const (
	runOK      runResult = iota // the round held the lock and went through the due rows
	runSkipped                  // another replica holds the lock
	runError                    // PostgreSQL or Firebase failed; the rest waits for the next round
	numRunResults
)

var runResultNames = [numRunResults]string{"ok", "skipped", "error"}

// rowResult is what the worker did with one row, the label of
// federation_worker_rows_total.
type rowResult int

const (
	rowLinked    rowResult = iota // an unlinked account was linked to its verified Firebase user
	rowRefreshed                  // a linked account's profile was refreshed; it is active again
	rowDisabled                   // the linked Firebase user is disabled; so is the row now
	rowFailed                     // the attempt failed and was recorded; retried after the back-off
	rowGaveUp                     // the attempt failed and max_attempts is reached: no more retries
	rowSkipped                    // the row changed since it was listed; left alone
	rowError                      // the row could not be read or written
	numRowResults
)

var rowResultNames = [numRowResults]string{"linked", "refreshed", "disabled", "failed", "gave_up", "skipped", "error"}

// errRowChanged: the row is no longer what the worker listed.
var errRowChanged = errors.New("row changed meanwhile")

// errUIDTaken: the Firebase uid has a row of its own.
var errUIDTaken = errors.New("firebase uid linked to another row")

// workerLockKey is the advisory lock key of the schema's worker, distinct
// from the migrations' (lockKey).
func workerLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("authgate.federation.worker:" + schema))
	return int64(h.Sum64())
}

// RunWorker retries failed federations until ctx ends, then returns nil.
// Every WorkerConfig.Interval it tries to take a PostgreSQL advisory lock
// (one per schema) on a connection of its own; a replica that does not get
// it skips the round, so one replica at a time does the work. The holder
// goes through up to BatchSize failed, live rows whose back-off has passed
// and whose sync_attempts is below MaxAttempts:
//
//   - A row linked to a Firebase uid is refreshed from the user record:
//     username from the display name (if no other row has it), email from
//     the record only if Firebase says it is verified (and no other live
//     row has it), and it becomes active again; if the Firebase user is
//     disabled, the row's federation_status becomes disabled.
//   - An unlinked row (a refused link: EnsureUser never records the uid
//     that claimed it) is linked only to the Firebase user that has the
//     row's email, only if Firebase says that email is verified, the user
//     is not disabled, and no other row has its uid.
//
// Anything else is recorded with MarkFailed (sync_attempts one more, the
// reason in last_sync_error) and retried after the back-off; a row that
// reaches MaxAttempts stays failed and is not retried again (an admin link
// or a reset of sync_attempts revives it). When Firebase or PostgreSQL is
// unavailable the round ends without blaming the rows. Every change goes
// through the repository and invalidates the row's cache entries.
//
// RunWorker holds one pooled connection per round for the lock, so
// max_conns must be at least 2. profiles must not be nil.
func (s *Store) RunWorker(ctx context.Context, profiles Profiles) error {
	if profiles == nil {
		return errors.New("federation worker: no firebase profiles")
	}
	tick := s.workerTick
	if tick == nil {
		t := time.NewTicker(s.cfg.Worker.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			s.workRound(ctx, profiles)
		}
	}
}

// workRound is one round of the worker.
func (s *Store) workRound(ctx context.Context, p Profiles) runResult {
	res := s.lockedRound(ctx, p)
	if res == runError && ctx.Err() != nil {
		return res // stopped, not failed
	}
	s.m.workerRuns[res].Inc()
	return res
}

// warn logs a problem of the worker, unless ctx ended: then the problem is
// the shutdown.
func (s *Store) warn(ctx context.Context, msg string, fields ...zap.Field) {
	if ctx.Err() == nil {
		s.log.Warn(msg, fields...)
	}
}

// lockedRound takes the worker's lock and, if it gets it, retries the due
// rows.
func (s *Store) lockedRound(ctx context.Context, p Profiles) runResult {
	actx, cancel := context.WithTimeout(ctx, s.cfg.AcquireTimeout)
	c, err := s.pool.Acquire(actx)
	cancel()
	if err != nil {
		s.warn(ctx, "federation worker: no connection for its lock", zap.Error(translate(ctx, err)))
		return runError
	}
	defer c.Release()
	key := workerLockKey(s.cfg.Schema)
	var got bool
	qctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	err = c.QueryRow(qctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got)
	cancel()
	if err != nil {
		s.warn(ctx, "federation worker: lock not taken", zap.Error(translate(ctx, err)))
		return runError
	}
	if !got {
		return runSkipped
	}
	defer func() {
		// The lock belongs to the session: a connection going back to the
		// pool with it would keep it from every other replica.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.QueryTimeout)
		defer cancel()
		if _, err := c.Exec(uctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			// Closing the session releases the lock; the pool then drops
			// the connection.
			_ = c.Conn().Close(uctx)
		}
	}()

	rows, err := s.dueFailures(ctx)
	if err != nil {
		s.warn(ctx, "federation worker: failed federations not listed", zap.Error(err))
		return runError
	}
	for _, u := range rows {
		if ctx.Err() != nil {
			return runOK
		}
		res, err := s.syncRow(ctx, p, u)
		s.m.workerRows[res].Inc()
		if err != nil {
			s.warn(ctx, "federation worker: round cut short", zap.String("user_id", u.ID), zap.Error(err))
			return runError
		}
	}
	return runOK
}

// dueFailures lists the rows whose retry is due.
func (s *Store) dueFailures(ctx context.Context) ([]User, error) {
	w := s.cfg.Worker
	var out []User
	err := s.Repo().run(ctx, "list due failed federations", func(ctx context.Context, q querier) error {
		rows, err := q.Query(ctx, sqlListDue, w.MaxAttempts, float64(w.BackoffBase.Microseconds()),
			float64(w.BackoffMax.Microseconds()), s.now(), w.BatchSize)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) { return scanUser(row) })
		return err
	})
	return out, err
}

// syncRow retries one failed federation. The error is not nil only when
// the round should end: PostgreSQL or Firebase is unavailable.
func (s *Store) syncRow(ctx context.Context, p Profiles, u User) (rowResult, error) {
	if u.FirebaseUID != "" {
		return s.refreshRow(ctx, p, u)
	}
	return s.relinkRow(ctx, p, u)
}

// relinkRow retries an unlinked failed row: it is linked to the Firebase
// user with its email only if Firebase says that email is verified.
func (s *Store) relinkRow(ctx context.Context, p Profiles, u User) (rowResult, error) {
	if u.Email == "" {
		return s.failRow(ctx, u, reasonNoEmail)
	}
	prof, err := p.ByEmail(ctx, u.Email)
	switch {
	case errors.Is(err, ErrFirebaseUnavailable):
		return rowError, err
	case errors.Is(err, ErrNotFound):
		return s.failRow(ctx, u, reasonNoFirebaseUser)
	case err != nil:
		s.log.Warn("federation worker: firebase lookup by email failed", zap.String("user_id", u.ID), zap.Error(err))
		return s.failRow(ctx, u, reasonLookupFailed)
	case !strings.EqualFold(prof.Email, u.Email) || prof.UID == "":
		// Never link on anything but the very address.
		return s.failRow(ctx, u, reasonNoFirebaseUser)
	case !prof.EmailVerified:
		return s.failRow(ctx, u, reasonEmailUnverified)
	case prof.Disabled:
		return s.failRow(ctx, u, reasonEmailDisabled)
	}
	var linked User
	err = s.WithTx(ctx, func(tx *Repo) error {
		if _, err := tx.lockUnchanged(ctx, u); err != nil {
			return err
		}
		switch _, err := tx.FindByFirebaseUID(ctx, prof.UID); {
		case err == nil: // a row of its own, live or deleted
			return errUIDTaken
		case !errors.Is(err, ErrNotFound):
			return err
		}
		var err error
		linked, err = tx.Link(ctx, u.ID, prof.UID)
		return err
	})
	switch {
	case err == nil:
		s.log.Info("federation worker: account linked to its verified firebase user",
			zap.String("user_id", linked.ID), zap.String("firebase_uid", linked.FirebaseUID))
		return rowLinked, nil
	case errors.Is(err, errUIDTaken), errors.Is(err, ErrConflict):
		return s.failRow(ctx, u, reasonUIDTaken)
	}
	return s.writeFailed(u, err)
}

// refreshRow retries a linked failed row by refreshing it from its
// Firebase user record.
func (s *Store) refreshRow(ctx context.Context, p Profiles, u User) (rowResult, error) {
	prof, err := p.ByUID(ctx, u.FirebaseUID)
	switch {
	case errors.Is(err, ErrFirebaseUnavailable):
		return rowError, err
	case errors.Is(err, ErrNotFound):
		return s.failRow(ctx, u, reasonLinkedUserGone)
	case err != nil:
		s.log.Warn("federation worker: firebase lookup by uid failed", zap.String("user_id", u.ID), zap.Error(err))
		return s.failRow(ctx, u, reasonLookupFailed)
	}
	now := s.now()
	res := rowRefreshed
	err = s.WithTx(ctx, func(tx *Repo) error {
		cur, err := tx.lockUnchanged(ctx, u)
		if err != nil {
			return err
		}
		zero, none := 0, ""
		status := StatusActive
		ch := Changes{FederationStatus: &status, SyncAttempts: &zero, LastSyncError: &none, LastSyncedAt: &now}
		if prof.Disabled {
			status, res = StatusDisabled, rowDisabled
			reason := reasonFirebaseDisabled
			ch.LastSyncError = &reason
			_, err := tx.Update(ctx, u.ID, ch)
			return err
		}
		if name := prof.DisplayName; name != "" && name != cur.Username {
			switch owner, err := tx.FindByUsername(ctx, name); {
			case errors.Is(err, ErrNotFound), err == nil && owner.ID == u.ID: // free, or its own in another case
				ch.Username = &name
			case err != nil:
				return err
			}
		}
		if email := prof.Email; email != "" && prof.EmailVerified && !strings.EqualFold(email, cur.Email) {
			switch _, err := tx.FindByEmail(ctx, email); {
			case errors.Is(err, ErrNotFound):
				ch.Email = &email
			case err != nil:
				return err
			default:
				s.log.Warn("federation worker: the firebase user's verified email belongs to another account; keeping the row's",
					zap.String("user_id", u.ID))
			}
		}
		_, err = tx.Update(ctx, u.ID, ch)
		return err
	})
	if err != nil {
		return s.writeFailed(u, err)
	}
	return res, nil
}

// failRow records a failed attempt on the row, unless it changed since it
// was listed.
func (s *Store) failRow(ctx context.Context, u User, reason string) (rowResult, error) {
	var after User
	err := s.WithTx(ctx, func(tx *Repo) error {
		if _, err := tx.lockUnchanged(ctx, u); err != nil {
			return err
		}
		var err error
		after, err = tx.MarkFailed(ctx, u.ID, reason)
		return err
	})
	if err != nil {
		return s.writeFailed(u, err)
	}
	if after.SyncAttempts >= s.cfg.Worker.MaxAttempts {
		s.log.Warn("federation worker: giving up on a failed federation",
			zap.String("user_id", u.ID), zap.Int("attempts", after.SyncAttempts), zap.String("reason", reason))
		return rowGaveUp, nil
	}
	return rowFailed, nil
}

// writeFailed classifies an error of the transaction that handled u.
func (s *Store) writeFailed(u User, err error) (rowResult, error) {
	switch {
	case errors.Is(err, errRowChanged):
		return rowSkipped, nil
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return rowError, err
	}
	// A unique rule broken by a concurrent change, say: the next round
	// tries again.
	s.log.Warn("federation worker: row not updated", zap.String("user_id", u.ID), zap.Error(err))
	return rowError, nil
}

// lockUnchanged locks the row of u for the transaction and returns it, or
// errRowChanged if it is no longer the failed row the worker listed: a
// request, an admin or another worker got to it first.
func (r *Repo) lockUnchanged(ctx context.Context, u User) (User, error) {
	if r.tx == nil {
		return User{}, errors.New("lock user: outside a transaction")
	}
	cur, err := r.one(ctx, "lock user", sqlLockByID, u.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		return User{}, errRowChanged
	case err != nil:
		return User{}, err
	case cur.FederationStatus != StatusFailed, !cur.DeletedAt.IsZero(), cur.FirebaseUID != u.FirebaseUID,
		!strings.EqualFold(cur.Email, u.Email), cur.SyncAttempts != u.SyncAttempts:
		return User{}, errRowChanged
	}
	return cur, nil
}

// LinkUser links the live row userID to the Firebase user firebaseUID, as
// an admin migrating a legacy account does: it checks with profiles that
// the Firebase user exists (ErrUnknownFirebaseUser if not,
// ErrFirebaseUnavailable if Firebase cannot tell), then links the row like
// Repo.Link: federation_status active (a disabled account stays disabled),
// sync_attempts and last_sync_error cleared, cache entries invalidated.
// It is idempotent for the same pair. A row linked to another uid, or a
// uid that any other row holds (live or soft-deleted: a deleted row keeps
// its Firebase user out), is ErrConflict; an unknown or soft-deleted row
// is ErrNotFound. Emails are not compared: the admin vouches for the
// match.
func (s *Store) LinkUser(ctx context.Context, userID, firebaseUID string, profiles Profiles) (User, error) {
	const op = "link user"
	r := s.Repo()
	// The row first: an unknown row costs no Firebase call.
	u, err := r.FindByID(ctx, userID)
	if err != nil {
		return User{}, fmt.Errorf("%s: %w", op, err)
	}
	if !u.DeletedAt.IsZero() {
		return User{}, fmt.Errorf("%s: soft-deleted: %w", op, ErrNotFound)
	}
	if u.FirebaseUID != "" && u.FirebaseUID != firebaseUID {
		return User{}, fmt.Errorf("%s: %w: linked to another firebase uid", op, ErrConflict)
	}
	if _, err := profiles.ByUID(ctx, firebaseUID); err != nil {
		if errors.Is(err, ErrNotFound) {
			return User{}, fmt.Errorf("%s: %w", op, ErrUnknownFirebaseUser)
		}
		return User{}, fmt.Errorf("%s: %w", op, err)
	}
	u, err = r.Link(ctx, userID, firebaseUID)
	if errors.Is(err, ErrUserDisabled) { // soft-deleted meanwhile
		return User{}, fmt.Errorf("%s: soft-deleted: %w", op, ErrNotFound)
	}
	if err != nil {
		return User{}, err
	}
	s.log.Info("account linked by an admin", zap.String("user_id", u.ID), zap.String("firebase_uid", u.FirebaseUID))
	return u, nil
}

// RetryFederation retries the failed federation of the live row id at
// once, as a round of the worker would (see RunWorker), whatever its
// back-off and attempts so far, and returns the row after it with what
// came of it: "linked", "refreshed", "disabled", "failed" (recorded, for
// the worker to retry), "gave_up" (recorded; max_attempts reached) or
// "skipped" (the row changed meanwhile). A row whose federation has not
// failed is ErrNotFailed, an unknown or soft-deleted one ErrNotFound;
// ErrFirebaseUnavailable and ErrUnavailable mean nothing was learnt.
func (s *Store) RetryFederation(ctx context.Context, id string, profiles Profiles) (User, string, error) {
	const op = "retry federation"
	r := s.Repo()
	u, err := r.FindByID(ctx, id)
	switch {
	case err != nil:
		return User{}, "", fmt.Errorf("%s: %w", op, err)
	case !u.DeletedAt.IsZero():
		return User{}, "", fmt.Errorf("%s: soft-deleted: %w", op, ErrNotFound)
	case u.FederationStatus != StatusFailed:
		return User{}, "", fmt.Errorf("%s: %w", op, ErrNotFailed)
	}
	res, err := s.syncRow(ctx, profiles, u)
	if err != nil {
		return User{}, "", fmt.Errorf("%s: %w", op, err)
	}
	if res == rowError {
		return User{}, "", fmt.Errorf("%s: row not updated", op)
	}
	if u, err = r.FindByID(ctx, id); err != nil {
		return User{}, "", fmt.Errorf("%s: %w", op, err)
	}
	return u, rowResultNames[res], nil
}

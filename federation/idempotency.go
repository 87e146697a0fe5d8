package federation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// Idempotency key bounds and pruning.
const (
	// MaxIdempotencyKey bounds a key, in bytes.
	MaxIdempotencyKey = 255
	// pruneEvery is how often Run deletes expired keys, pruneBatch how
	// many one statement deletes and pruneBatches how many statements one
	// prune runs at most.
	pruneEvery   = time.Minute
	pruneBatch   = 1000
	pruneBatches = 10
)

const (
	// Claims the key for this transaction: a new key, or one that has
	// expired. A key another transaction holds makes it wait for that one
	// to end; a live key claims nothing.
	sqlClaimKey = `INSERT INTO idempotency_keys AS k (user_id, key, fingerprint, created_at, expires_at)
	VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, status = NULL, body = NULL,
		created_at = excluded.created_at, expires_at = excluded.expires_at
	WHERE k.expires_at <= $4
	RETURNING true`
	sqlKeptAnswer = `SELECT fingerprint, status, body FROM idempotency_keys WHERE user_id = $1 AND key = $2`
	sqlKeepAnswer = `UPDATE idempotency_keys SET status = $3, body = $4 WHERE user_id = $1 AND key = $2`
	sqlPruneKeys  = `DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
	SELECT ctid FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2))`
)

// Answer is what an idempotent request was answered, kept for its
// retries: an HTTP status and body, opaque to this package.
type Answer struct {
	Status int
	Body   []byte
}

// Idempotent runs fn at most once per user and key: in one transaction it
// claims the key, runs fn and keeps fn's answer with the key, for
// Config.IdempotencyTTL. A request with a key that is kept already is not
// run: it gets the kept answer (replayed true) if its fingerprint (a hash
// of what the request asks, the caller's choice) is the first one's, and
// ErrIdempotencyKeyReused otherwise. Concurrent requests with one key
// queue on it, so one runs fn and the others get its answer.
//
// fn's changes, through tx, commit with the key. An error of fn rolls
// both back and is returned: the key stays free for a retry. So an answer
// to keep, a refusal included, must come back as an Answer, and only a
// failure (PostgreSQL unavailable, say) as an error.
func (s *Store) Idempotent(ctx context.Context, userID, key string, fingerprint []byte, fn func(tx *Repo) (Answer, error)) (ans Answer, replayed bool, err error) {
	const op = "idempotent request"
	if !validUUID(userID) {
		return Answer{}, false, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if key == "" || len(key) > MaxIdempotencyKey {
		return Answer{}, false, fmt.Errorf("%s: key of %d bytes, want 1 to %d", op, len(key), MaxIdempotencyKey)
	}
	if fingerprint == nil {
		fingerprint = []byte{} // NULL is no fingerprint
	}
	err = s.WithTx(ctx, func(tx *Repo) error {
		now := s.now()
		var claimed bool
		err := tx.run(ctx, op, func(ctx context.Context, q querier) error {
			err := q.QueryRow(ctx, sqlClaimKey, userID, key, fingerprint, now, now.Add(s.cfg.IdempotencyTTL)).Scan(&claimed)
			if errors.Is(err, pgx.ErrNoRows) { // kept and live
				return nil
			}
			return err
		})
		if err != nil {
			return err
		}
		if claimed {
			if ans, err = fn(tx); err != nil {
				return err
			}
			return tx.run(ctx, op, func(ctx context.Context, q querier) error {
				_, err := q.Exec(ctx, sqlKeepAnswer, userID, key, ans.Status, ans.Body)
				return err
			})
		}
		replayed = true
		var kept []byte
		var status *int32
		err = tx.run(ctx, op, func(ctx context.Context, q querier) error {
			return q.QueryRow(ctx, sqlKeptAnswer, userID, key).Scan(&kept, &status, &ans.Body)
		})
		switch {
		case errors.Is(err, ErrNotFound):
			// Pruned between the two statements by a replica whose
			// clock is ahead: the client may simply retry.
			return fmt.Errorf("%s: key expired meanwhile: %w", op, ErrUnavailable)
		case err != nil:
			return err
		case !bytes.Equal(kept, fingerprint):
			return fmt.Errorf("%s: %w", op, ErrIdempotencyKeyReused)
		case status == nil:
			return fmt.Errorf("%s: kept without an answer", op)
		}
		ans.Status = int(*status)
		return nil
	})
	if err != nil {
		return Answer{}, false, err
	}
	return ans, replayed, nil
}

// pruneKeys deletes expired idempotency keys, at most pruneEvery often,
// and logs a failure: the keys are then pruned next time, and expired
// keys are claimed anew meanwhile. Run calls it.
func (s *Store) pruneKeys(ctx context.Context) {
	now := s.now()
	if now.Sub(s.lastPrune) < pruneEvery {
		return
	}
	s.lastPrune = now
	n, err := s.pruneExpiredKeys(ctx)
	if err != nil {
		s.warn(ctx, "expired idempotency keys not pruned", zap.Error(err))
		return
	}
	if n > 0 {
		s.log.Debug("expired idempotency keys pruned", zap.Int64("keys", n))
	}
}

// pruneExpiredKeys deletes keys expired by now, in batches, and returns
// how many it deleted.
func (s *Store) pruneExpiredKeys(ctx context.Context) (int64, error) {
	var total int64
	for range pruneBatches {
		var n int64
		err := s.withConn(ctx, func(ctx context.Context, q querier) error {
			tag, err := q.Exec(ctx, sqlPruneKeys, s.now(), pruneBatch)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune idempotency keys: %w", err)
		}
		total += n
		if n < pruneBatch {
			break
		}
	}
	return total, nil
}

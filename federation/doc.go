// Package federation owns the platform's user table in PostgreSQL: its
// migrations, the user repository, and EnsureUser, which turns a verified
// identity into the user's row, creating or linking it the first time a
// Firebase user is seen.
//
// Every Firebase user gets exactly one row: rows are created with INSERT …
// ON CONFLICT DO NOTHING and the unique indexes decide races between
// requests and between replicas, never a check-then-insert. An existing
// account is linked to a Firebase uid only when the token's email is
// verified; an unverified claim on an existing email is recorded on that
// account and refused (or served unlinked, per Config.OnEmailConflict).
//
// The hot path is a cache hit: rows are cached through internal/cache by
// user id and Firebase uid, invalidated by every change made here, and
// last_login is written in batches, at most once per interval per user.
// When PostgreSQL is unreachable EnsureUser serves the token's identity,
// marked degraded, or refuses it (Config.OnUnavailable); a circuit breaker
// keeps a dead database from costing the acquire timeout on every request,
// and Run creates the rows of identities seen meanwhile once it is back.
//
// Failed federations are retried by RunWorker, on one replica at a time
// (a PostgreSQL advisory lock), with exponential back-off: linked rows are
// refreshed from their Firebase user record (Profiles, on the Admin SDK),
// and a refused link is linked only to the Firebase user that has the
// account's email, once Firebase says that email is verified. LinkUser
// links a legacy account to a Firebase uid by hand, for the admin API, and
// RetryFederation retries one failure at once.
//
// Token balances change in one atomic statement each
// (Repo.ChangeTokenBalance), never below zero. Store.Idempotent makes a
// write happen at most once per user and idempotency key: the key and the
// answer are kept in the write's transaction, for Config.IdempotencyTTL.
//
// This package never imports HTTP serving code; the proxy maps its errors
// to status codes.
package federation

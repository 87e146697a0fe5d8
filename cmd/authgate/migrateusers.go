package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/internal/firebaseadmin"
)

// migrateUsers is `authgate migrate-users`: the bulk move of the old
// service's password accounts to Firebase (federation.MoveLegacyAccounts).
// Progress goes to stderr, a line per batch and per row left alone (user
// ids only); the totals to stdout. It exits 1 when a row failed.
func migrateUsers(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate-users", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	batch := fs.Int("batch", federation.MaxMoveBatch, fmt.Sprintf("rows per batch, 1..%d", federation.MaxMoveBatch))
	dryRun := fs.Bool("dry-run", false, "look everything up and count, change nothing")
	limit := fs.Int("limit", 0, "move at most this many rows; 0 means all")
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	usage := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "authgate migrate-users: "+format+"\n", a...)
		return exitError{2}
	}
	switch {
	case *path == "":
		return usage("--config FILE is required")
	case *batch < 1 || *batch > federation.MaxMoveBatch:
		return usage("--batch %d is outside 1..%d", *batch, federation.MaxMoveBatch)
	case *limit < 0:
		return usage("--limit %d is negative", *limit)
	}
	cfg, err := loadConfig(*path, environ)
	if err != nil {
		printProblems(stderr, *path, err)
		return exitError{2}
	}
	lp := cfg.AuthAPI.LegacyPasswords
	cols := federation.LegacyColumns{PasswordHash: lp.Column, EmailVerified: lp.EmailVerifiedColumn}
	fb := cfg.Verify.Firebase
	switch {
	case !cfg.Federation.Enabled:
		return usage("federation.enabled is false; the accounts to move are in its user table")
	case !lp.Enabled:
		return usage("auth_api.legacy_passwords.enabled is false; set it, and auth_api.legacy_passwords.column to the column with the old service's password hashes")
	case lp.Format != "bcrypt":
		return usage("auth_api.legacy_passwords.format: %q is not supported; the only format is bcrypt", lp.Format)
	case cols.Validate() != nil:
		return usage("%v", configerr.Prefix("auth_api.legacy_passwords.", cols.Validate()))
	case !fb.Enabled:
		return usage("verify.firebase.enabled is false; the accounts move to the project of verify.firebase.project_id")
	}
	if host := lookupEnv(environ, emulatorEnv); host != "" && !fb.Emulator {
		return usage("%s is set (%q) but verify.firebase.emulator is not enabled: the accounts would go to the emulator; unset it, or enable emulator mode for development", emulatorEnv, host)
	}

	log, flush, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer flush()
	need := sharedNeed(cfg, "migrate-users")
	client, err := firebaseadmin.AuthClient(ctx, fb.ProjectID, need.file)
	if err != nil {
		return firebaseAdminError(need, err)
	}
	// Through Redis, each link reaches the replicas' caches of the row.
	rdb, err := cache.OpenRedis(cfg.Cache.Redis, log)
	if err != nil {
		return fmt.Errorf("redis: %w", configerr.Prefix("cache.redis.", err))
	}
	var opts []federation.Option
	if rdb != nil {
		defer rdb.Close()
		opts = append(opts, federation.WithCache(cfg.Cache, rdb))
	}
	store, err := federation.Open(ctx, cfg.Federation, log, nil, opts...)
	if err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	defer store.Close()

	mode := ""
	if *dryRun {
		mode = " (dry run: nothing changed)"
	}
	total, err := store.MoveLegacyAccounts(ctx, federation.NewFirebaseImporter(client), federation.MoveOptions{
		Columns: cols, KeepHash: lp.KeepHash, Batch: *batch, Limit: *limit, DryRun: *dryRun,
		Progress: func(r federation.MoveReport) {
			fmt.Fprintf(stderr, "batch %d: %s%s\n", r.Batch, counts(r), mode)
		},
		Row: func(o federation.RowOutcome) {
			what := "skipped"
			if o.Failed {
				what = "failed"
			}
			fmt.Fprintf(stderr, "  user %s %s: %s\n", o.UserID, what, o.Reason)
		},
	})
	fmt.Fprintf(stdout, "migrate-users: %s%s\n", counts(total), mode)
	if err != nil {
		if errors.Is(err, federation.ErrMoveRunning) {
			return fmt.Errorf("%w; it moves the same rows, so wait for it to finish and run again", err)
		}
		return err
	}
	if total.Failed > 0 {
		fmt.Fprintf(stderr, "authgate migrate-users: %d row(s) failed; see the lines above, fix and run again\n", total.Failed)
		return exitError{1}
	}
	return nil
}

// counts is a report's numbers in one line.
func counts(r federation.MoveReport) string {
	return fmt.Sprintf("%d rows: imported %d, linked %d, skipped %d, failed %d", r.Selected, r.Imported, r.Linked, r.Skipped, r.Failed)
}

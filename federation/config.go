package federation

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/internal/secret"
)

// Defaults (see DefaultConfig), and bounds that catch unit mistakes.
const (
	defaultSchema            = "auth"
	defaultMinConns          = 2
	defaultMaxConns          = 10
	defaultMaxConnIdleTime   = 10 * time.Second
	defaultAcquireTimeout    = 2 * time.Second
	defaultQueryTimeout      = 2 * time.Second
	defaultLastLoginInterval = 5 * time.Minute
	defaultCacheTTL          = time.Minute
	defaultPendingMax        = 10_000
	defaultLastLoginMax      = 100_000
	defaultIdempotencyTTL    = 24 * time.Hour

	maxConns            = 1000
	maxTimeout          = time.Minute
	maxPendingMax       = 10_000_000
	maxSchemaNameLength = 63 // NAMEDATALEN - 1
	minIdempotencyTTL   = time.Minute
	maxIdempotencyTTL   = 30 * 24 * time.Hour
)

// Policies for OnUnavailable and OnEmailConflict.
const (
	PolicyAllow = "allow"
	PolicyDeny  = "deny"
)

// Config configures the user store (the yaml key "federation").
type Config struct {
	// Enabled turns federation on: without it authgate keeps no user table
	// and X-User-Id is the token subject. Open does not look at it; the
	// caller decides whether to open a Store at all.
	Enabled bool `yaml:"enabled"`
	// DatabaseURL is a pgx connection string (URL or key=value), such as
	// postgres://authgate@db:5432/platform?sslmode=verify-full. It may hold
	// a password, so prefer DatabaseURLFile. Statements are prepared and
	// cached per connection (pgx's default exec mode); behind PgBouncer in
	// transaction mode add default_query_exec_mode=exec to the URL.
	DatabaseURL secret.Secret `yaml:"database_url"`
	// DatabaseURLFile is a file holding the connection string (a trailing
	// newline is ignored), such as a mounted Kubernetes Secret.
	DatabaseURLFile string `yaml:"database_url_file"`
	// Schema holds the users table and schema_migrations; it becomes the
	// connections' search_path. Lowercase letters, digits and underscores.
	// Default "auth".
	Schema string `yaml:"schema"`
	// MinConns is the number of connections kept open. Default 2; 0 keeps
	// none open while idle.
	MinConns int `yaml:"min_conns"`
	// MaxConns bounds the pool. Default 10; 1 to 1000.
	MaxConns int `yaml:"max_conns"`
	// MaxConnIdleTime closes connections (above MinConns) idle this long.
	// Default 10s; 0 closes them as soon as they are idle at a health
	// check.
	MaxConnIdleTime time.Duration `yaml:"max_conn_idle_time"`
	// AcquireTimeout bounds waiting for a pooled connection, including
	// opening one, on every request that misses the cache. Default 2s. The
	// original service waited 30s: with PostgreSQL down or the pool
	// exhausted, every request would hang that long before any fallback,
	// past the timeouts of the gateways that call forward-auth, while
	// goroutines and client connections pile up. Two seconds is far above a
	// healthy acquire (microseconds) and short enough for on_unavailable to
	// take over while the client still waits.
	AcquireTimeout time.Duration `yaml:"acquire_timeout"`
	// QueryTimeout bounds the statements of one operation once a
	// connection is acquired. Default 2s; must be positive.
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// MigrateOnStart applies the embedded migrations when authgate starts,
	// before it serves. Off by default: run "authgate migrate" from a
	// deploy job instead.
	MigrateOnStart bool `yaml:"migrate_on_start"`
	// OnUnavailable says what happens to a request when PostgreSQL cannot
	// be reached: "allow" (default) serves the identity from the token,
	// marked degraded, and creates its row once PostgreSQL is back; "deny"
	// refuses it with ErrUnavailable (503).
	OnUnavailable string `yaml:"on_unavailable"`
	// OnEmailConflict says what happens to a Firebase identity whose email
	// belongs to an existing account it may not be linked to (the token's
	// email is not verified, or the account is linked to another Firebase
	// user): "deny" (default) refuses it with ErrLinkRefused (403); "allow"
	// serves it as an unlinked identity without a user id. The account is
	// never linked either way.
	OnEmailConflict string `yaml:"on_email_conflict"`
	// LastLoginInterval is how often last_login is written per user at
	// most; writes are batched. Default 5m; 0 writes it on every request
	// (still batched); negative turns last_login tracking off.
	LastLoginInterval time.Duration `yaml:"last_login_interval"`
	// LastLoginMax bounds the last-login bookkeeping, both the users
	// whose write this replica remembers having scheduled within
	// last_login_interval (21 to 43 bytes each; further users are not
	// remembered, and each of their requests schedules the write again)
	// and the writes waiting for the next flush (they pile up while
	// PostgreSQL is unreachable); writes beyond it are dropped and counted
	// in last_login_dropped_total, and the user's next request after
	// last_login_interval schedules them again. Default 100000; 1 to
	// 10000000.
	LastLoginMax int `yaml:"last_login_max"`
	// CacheTTL is how long a user row is cached, by user id and by Firebase
	// uid. Changes made through this package invalidate it at once; other
	// replicas' in-process copies expire per cache.local_max_ttl. Default
	// 1m; 0 (or negative) turns the cache off.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// PendingMax bounds the Firebase identities remembered while PostgreSQL
	// is unreachable, whose rows are created once it is back. Default
	// 10000; identities beyond it are served but not remembered (they are
	// created on their next request); 0 remembers none.
	PendingMax int `yaml:"pending_max"`
	// FirebaseCredentialsFile is the service account key file with which
	// the worker and the admin link API read Firebase user records
	// (Firebase Auth Admin read access suffices). Empty means the one of
	// verify.firebase.revocation.credentials_file, and if that is empty
	// too, Google's application default credentials. Not used with the
	// Auth Emulator.
	FirebaseCredentialsFile string `yaml:"firebase_credentials_file"`
	// IdempotencyTTL is how long the admin API keeps the answer to a
	// write with an Idempotency-Key header, replaying it to retries with
	// the key (see Store.Idempotent). Default 24h; 1m to 720h.
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// Worker retries failed federations in the background.
	Worker WorkerConfig `yaml:"worker"`
}

// DefaultConfig returns the defaults, federation off.
func DefaultConfig() Config {
	return Config{
		Schema:            defaultSchema,
		MinConns:          defaultMinConns,
		MaxConns:          defaultMaxConns,
		MaxConnIdleTime:   defaultMaxConnIdleTime,
		AcquireTimeout:    defaultAcquireTimeout,
		QueryTimeout:      defaultQueryTimeout,
		OnUnavailable:     PolicyAllow,
		OnEmailConflict:   PolicyDeny,
		LastLoginInterval: defaultLastLoginInterval,
		LastLoginMax:      defaultLastLoginMax,
		CacheTTL:          defaultCacheTTL,
		PendingMax:        defaultPendingMax,
		IdempotencyTTL:    defaultIdempotencyTTL,
		Worker:            DefaultWorkerConfig(),
	}
}

// Validate reports every problem with the configuration, each prefixed with
// its key. A disabled configuration is valid.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if _, err := c.poolConfig(); err != nil {
		errs = append(errs, err)
	}
	if !validSchema(c.Schema) {
		errs = append(errs, fmt.Errorf("schema: %q must be 1 to %d of [a-z0-9_], starting with a letter or _, and not pg_", c.Schema, maxSchemaNameLength))
	}
	if c.MinConns < 0 || c.MinConns > maxConns {
		errs = append(errs, fmt.Errorf("min_conns: %d is outside 0..%d", c.MinConns, maxConns))
	}
	if c.MaxConns < 1 || c.MaxConns > maxConns {
		errs = append(errs, fmt.Errorf("max_conns: %d is outside 1..%d", c.MaxConns, maxConns))
	} else if c.MinConns > c.MaxConns {
		errs = append(errs, errors.New("min_conns: must not exceed max_conns"))
	}
	if c.MaxConnIdleTime < 0 {
		errs = append(errs, errors.New("max_conn_idle_time: must not be negative"))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"acquire_timeout", c.AcquireTimeout}, {"query_timeout", c.QueryTimeout}} {
		if d.v <= 0 || d.v > maxTimeout {
			errs = append(errs, fmt.Errorf("%s: %s is outside 1ns..%s", d.key, d.v, maxTimeout))
		}
	}
	if c.OnUnavailable != PolicyAllow && c.OnUnavailable != PolicyDeny {
		errs = append(errs, fmt.Errorf("on_unavailable: %q must be allow or deny", c.OnUnavailable))
	}
	if c.OnEmailConflict != PolicyAllow && c.OnEmailConflict != PolicyDeny {
		errs = append(errs, fmt.Errorf("on_email_conflict: %q must be deny or allow", c.OnEmailConflict))
	}
	if c.PendingMax < 0 || c.PendingMax > maxPendingMax {
		errs = append(errs, fmt.Errorf("pending_max: %d is outside 0..%d (0 = remember none)", c.PendingMax, maxPendingMax))
	}
	if c.LastLoginMax < 1 || c.LastLoginMax > maxPendingMax {
		errs = append(errs, fmt.Errorf("last_login_max: %d is outside 1..%d (a negative last_login_interval turns tracking off)", c.LastLoginMax, maxPendingMax))
	}
	if c.IdempotencyTTL < minIdempotencyTTL || c.IdempotencyTTL > maxIdempotencyTTL {
		errs = append(errs, fmt.Errorf("idempotency_ttl: %s is outside %s..%s", c.IdempotencyTTL, minIdempotencyTTL, maxIdempotencyTTL))
	}
	if f := c.FirebaseCredentialsFile; f != "" {
		if fi, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("firebase_credentials_file: %w", err))
		} else if !fi.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("firebase_credentials_file: %s is not a regular file", f))
		}
	}
	errs = append(errs, configerr.Prefix("worker.", c.Worker.Validate()))
	if c.Worker.Enabled && c.MaxConns < 2 {
		// One connection holds the worker's lock while others do its work.
		errs = append(errs, errors.New("worker.enabled: needs max_conns of at least 2"))
	}
	return errors.Join(errs...)
}

// databaseURL returns DatabaseURL, or the content of DatabaseURLFile.
func (c Config) databaseURL() (string, error) {
	s, err := secret.Pick("database_url", c.DatabaseURL, "database_url_file", c.DatabaseURLFile)
	if err == nil && s == "" {
		err = errors.New("database_url: required (or database_url_file)")
	}
	return s.Value(), err
}

// poolConfig parses the connection string into a pool configuration with
// the settings of c applied (see Open).
func (c Config) poolConfig() (*pgxpool.Config, error) {
	url, err := c.databaseURL()
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx redacts the password from the string it quotes.
		return nil, fmt.Errorf("database_url: %w", err)
	}
	return pc, nil
}

// validSchema reports whether s is a schema name that needs no quoting and
// is not reserved for the system.
func validSchema(s string) bool {
	if len(s) == 0 || len(s) > maxSchemaNameLength || strings.HasPrefix(s, "pg_") {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b == '_':
		case b >= '0' && b <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

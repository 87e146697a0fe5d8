package federation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/breaker"
	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/verify"
)

// runEvery is how often Run flushes last_login writes and retries the
// identities remembered during an outage.
const runEvery = 5 * time.Second

// Breaker back-off after PostgreSQL failed: doubled by each failed probe.
const (
	breakerInitial = time.Second
	breakerMax     = 30 * time.Second
)

// Store is the user table. It is safe for concurrent use. Build it with
// Open; Run does its background work and Close releases it.
type Store struct {
	cfg    Config
	pool   *pgxpool.Pool
	users  *cache.Cache[packedUser] // nil when Config.CacheTTL is negative
	tracer trace.Tracer             // nil when tracing is off
	now    func() time.Time
	log    *zap.Logger
	m      *metrics
	br     *breaker.Breaker
	logins loginTracker
	wait   pendingSet
	tick   <-chan time.Time // replaces the Run ticker in tests

	workerTick <-chan time.Time // replaces the RunWorker ticker in tests
	lastPrune  time.Time        // of idempotency keys; Run's own
}

// Option adjusts a Store.
type Option func(*options)

type options struct {
	cacheCfg cache.Config
	rdb      *cache.Redis
	local    *cache.Local
	now      func() time.Time
	clock    bool // now was injected
	tp       trace.TracerProvider

	// Set by tests only: a tracer counting queries, and the ticks that
	// drive Run and RunWorker.
	tracer     pgx.QueryTracer
	tick       <-chan time.Time
	workerTick <-chan time.Time
}

// WithCache configures the cache of user rows: cfg is the process's shared
// cache configuration and rdb the shared Redis tier (nil: in-process only).
// Without it the rows are cached in-process with the cache defaults.
func WithCache(cfg cache.Config, rdb *cache.Redis) Option {
	return func(o *options) { o.cacheCfg, o.rdb = cfg, rdb }
}

// WithLocal puts the user-row cache's in-process tier in l, the process's
// shared in-process tier (see cache.WithLocal). Without it the cache builds
// its own, of cache.local_max_bytes.
func WithLocal(l *cache.Local) Option {
	return func(o *options) { o.local = l }
}

// WithTracerProvider turns tracing on: a user row that is not cached is
// looked up, created or linked under a federation.ensure_user span. Without
// it (or with nil) tracing is off and costs nothing.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// WithClock replaces time.Now, for tests: it drives last_login, the breaker
// back-off and the cache's in-process expiry.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now, o.clock = now, true }
}

// Open builds a Store on a pool of connections to cfg.DatabaseURL. It does
// not connect: connections are opened on first use, so authgate starts
// while PostgreSQL is down (Check tells). reg receives the metrics and may
// be nil; log may be nil. ctx only bounds the set-up.
//
// Every connection has search_path set to cfg.Schema, and pgx prepares and
// caches each statement per connection (QueryExecModeCacheStatement, its
// default), so the hot path sends no parse round trips.
func Open(ctx context.Context, cfg Config, log *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Store, error) {
	cfg.Enabled = true // Validate checks only an enabled config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("federation config: %w", err)
	}
	o := options{now: time.Now, cacheCfg: cache.DefaultConfig()}
	for _, fn := range opts {
		fn(&o)
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("federation")

	pc, err := cfg.poolConfig()
	if err != nil {
		return nil, err
	}
	pc.MinConns = int32(cfg.MinConns)
	pc.MaxConns = int32(cfg.MaxConns)
	pc.MaxConnIdleTime = cfg.MaxConnIdleTime
	cc := pc.ConnConfig
	cc.RuntimeParams["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "authgate"
	}
	if cc.ConnectTimeout == 0 {
		// Connects go on in the background after an acquire gives up; pgx
		// would let them hang for two minutes on a host that drops packets.
		cc.ConnectTimeout = cfg.AcquireTimeout
	}
	if o.tracer != nil {
		cc.Tracer = o.tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgresql pool: %w", err)
	}

	s := &Store{
		cfg:  cfg,
		pool: pool,
		now:  o.now,
		log:  log,
		tick: o.tick,
		br:   breaker.New(breakerInitial, breakerMax),
		wait: pendingSet{max: cfg.PendingMax, m: make(map[string]verify.Identity)},
	}
	s.workerTick = o.workerTick
	if o.tp != nil {
		s.tracer = o.tp.Tracer("github.com/authgate/authgate/federation")
	}
	s.logins.init(cfg.LastLoginMax)
	if cfg.CacheTTL > 0 {
		var copts []cache.Option
		if o.clock {
			copts = append(copts, cache.WithClock(o.now))
		}
		if o.tp != nil {
			copts = append(copts, cache.WithTracerProvider(o.tp))
		}
		if o.local != nil {
			copts = append(copts, cache.WithLocal(o.local))
		}
		copts = append(copts, cache.WithBinary[packedUser](packedUserBinary{}))
		s.users, err = cache.New[packedUser](o.cacheCfg, "users", o.rdb, packedJSON{}, log, reg, copts...)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("user cache: %w", err)
		}
	}
	if s.m, err = newMetrics(reg, s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Check reports whether PostgreSQL answers, for readiness: nil, or an error
// wrapping ErrUnavailable. It always sends a ping, even while the breaker
// skips PostgreSQL for requests, and a success closes the breaker.
func (s *Store) Check(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.AcquireTimeout+s.cfg.QueryTimeout)
	defer cancel()
	err := translate(ctx, s.pool.Ping(pctx))
	if err != nil && !errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
		// A ping fails only for want of a connection.
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.report(ctx, err)
	if err != nil {
		return fmt.Errorf("ping postgresql: %w", err)
	}
	return nil
}

// Close closes the pool and the cache. The Store must not be used after,
// and Run must have returned.
func (s *Store) Close() {
	s.pool.Close()
	if s.users != nil {
		s.users.Close()
	}
}

// Run does the Store's background work until ctx ends: every few seconds it
// writes the batched last_login values and creates the rows of identities
// served while PostgreSQL was unreachable, and every minute it deletes
// expired idempotency keys. When ctx ends it writes the
// last batch, bounded by the acquire and query timeouts, and returns nil.
// It must run while the Store serves EnsureUser: without it last_login is
// never written and the bookkeeping of it grows with every user seen. End
// it before calling Close.
func (s *Store) Run(ctx context.Context) error {
	tick := s.tick
	if tick == nil {
		t := time.NewTicker(runEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.AcquireTimeout+s.cfg.QueryTimeout)
			s.flushLogins(fctx)
			cancel()
			return nil
		case <-tick:
			s.flushLogins(ctx)
			s.retryPending(ctx)
			s.pruneKeys(ctx)
		}
	}
}

// querier runs statements: a pooled connection or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// withConn runs fn on a pooled connection. Acquiring waits at most the
// acquire timeout and fn's statements run under the query timeout; errors
// come back translated (see translate).
func (s *Store) withConn(ctx context.Context, fn func(ctx context.Context, q querier) error) error {
	actx, cancel := context.WithTimeout(ctx, s.cfg.AcquireTimeout)
	c, err := s.pool.Acquire(actx)
	cancel()
	if err != nil {
		return translate(ctx, fmt.Errorf("acquire connection: %w", err))
	}
	defer c.Release()
	qctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	return translate(ctx, fn(qctx, c))
}

// invalidate drops cache keys after a change. A Redis failure is logged:
// other replicas may then serve the old row until its TTL ends.
func (s *Store) invalidate(ctx context.Context, keys ...string) {
	if s.users == nil || len(keys) == 0 {
		return
	}
	if err := s.users.Invalidate(context.WithoutCancel(ctx), keys...); err != nil {
		s.log.Warn("user cache invalidation incomplete", zap.Error(err))
	}
}

// keysOf returns the cache keys of u.
func keysOf(u User) []string {
	keys := []string{idKey(u.ID)}
	if u.FirebaseUID != "" {
		keys = append(keys, uidKey(u.FirebaseUID))
	}
	return keys
}

func idKey(id string) string   { return "id:" + id }
func uidKey(uid string) string { return "uid:" + uid }

// report feeds the breaker with the outcome of a PostgreSQL operation the
// breaker allowed, and logs a change of state.
func (s *Store) report(ctx context.Context, err error) {
	switch {
	case err == nil || !errors.Is(err, ErrUnavailable) && ctx.Err() == nil:
		if s.br.Succeed() {
			s.log.Info("postgresql available again")
		}
	case errors.Is(err, ErrUnavailable) && ctx.Err() == nil:
		if backoff, changed := s.br.Fail(s.now(), err); changed {
			s.log.Warn("postgresql unavailable, skipping it", zap.Error(err), zap.Duration("backoff", backoff))
		}
	default: // the caller went away: no verdict
		s.br.Release()
	}
}

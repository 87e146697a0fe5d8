package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/breaker"
)

// ErrRedisUnavailable is wrapped by Check while Redis is failing and being
// skipped. The caches keep answering from the in-process tier and their
// loaders meanwhile, so it means degraded, not down.
var ErrRedisUnavailable = errors.New("redis unavailable")

// Redis is a connection to the shared tier, used by every cache built on
// it. It remembers failures: after a failed command Redis is skipped for a
// back-off that doubles with each further failure, so that a dead Redis costs
// one timeout per back-off instead of one per request. go-redis reconnects by
// itself; the first command after the back-off is the probe.
//
// A nil *Redis is valid and means no Redis. It is safe for concurrent use.
type Redis struct {
	client redis.UniversalClient
	prefix string
	now    func() time.Time
	log    *zap.Logger
	br     *breaker.Breaker

	// Invalidation messages (see Run): the channel, the caches that
	// listen, how often a silent subscription is pinged and the back-off
	// between subscription attempts.
	channel             string
	subs                listeners
	ping                time.Duration
	backoff, backoffMax time.Duration

	// opTimeout bounds one lookup, write or invalidation from start to
	// reply (RedisConfig.ReadTimeout).
	opTimeout time.Duration
	// trips counts the round trips of the caches' lookups, writes and
	// invalidations (a pipeline is one).
	trips atomic.Int64
}

// bound returns ctx limited to one operation's time. go-redis otherwise
// applies read_timeout to each reply it reads and retries a timed-out
// command, so that a frozen Redis held a two-command lookup for four times
// read_timeout (found by the fault suite); with ContextTimeoutEnabled the
// deadline reaches the connection, and a command past it is not retried.
func (r *Redis) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opTimeout)
}

// OpenRedis builds a client from cfg. It does not connect: connections are
// made on first use, so authgate starts while Redis is down. It returns nil
// and no error when cfg has no addresses. log receives one line each time
// Redis starts or stops failing; nil means no logging. Of the options only
// WithClock applies; it times the back-off.
func OpenRedis(cfg RedisConfig, log *zap.Logger, opts ...Option) (*Redis, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.enabled() {
		return nil, nil
	}
	pw, err := cfg.password()
	if err != nil {
		return nil, err
	}
	o := newOptions(opts)
	ro := &redis.UniversalOptions{
		Addrs:         cfg.Addrs,
		MasterName:    cfg.MasterName,
		IsClusterMode: cfg.Cluster,
		DB:            cfg.DB,
		Username:      cfg.Username,
		Password:      pw,
		DialTimeout:   cfg.DialTimeout,
		ReadTimeout:   cfg.ReadTimeout,
		WriteTimeout:  cfg.WriteTimeout,
		PoolSize:      cfg.PoolSize,
		// One retry gets past a pooled connection that Redis closed; more,
		// or go-redis's default of five dial attempts 100ms apart, would
		// only delay the fallback to the loader. The back-off is the retry.
		MaxRetries:    1,
		DialerRetries: 1,
		// Deadlines from Redis.bound reach the connection.
		ContextTimeoutEnabled: true,
	}
	if cfg.TLS {
		// ServerName stays empty: crypto/tls takes it from each address.
		ro.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &Redis{
		client:     redis.NewUniversalClient(ro),
		prefix:     cfg.KeyPrefix,
		now:        o.now,
		log:        orNop(log).Named("redis"),
		br:         breaker.New(cfg.FailureBackoff, cfg.FailureBackoffMax),
		channel:    cfg.KeyPrefix + "invalidate",
		ping:       subscribePing,
		backoff:    cfg.FailureBackoff,
		backoffMax: cfg.FailureBackoffMax,
		opTimeout:  cfg.ReadTimeout,
	}, nil
}

// Close closes every connection. Caches built on r must not be used after.
func (r *Redis) Close() error {
	if r == nil {
		return nil
	}
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("close redis: %w", err)
	}
	return nil
}

// Ping sends PING, ignoring the back-off, and returns its error.
func (r *Redis) Ping(ctx context.Context) error {
	if r == nil {
		return nil
	}
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Check reports the state of the shared tier for health: nil when Redis
// answers (or none is configured), or an error wrapping ErrRedisUnavailable
// while it fails ("degraded": the caches still answer). It sends a PING
// even during a back-off, as the PostgreSQL check does, so that a health
// probe notices a recovery at once instead of after the back-off (up to
// failure_backoff_max); the answer closes or keeps the breaker, and a
// failed probe does not lengthen the back-off.
func (r *Redis) Check(ctx context.Context) error {
	if r == nil {
		return nil
	}
	octx, cancel := r.bound(ctx)
	defer cancel()
	err := r.client.Ping(octx).Err()
	r.report(ctx, err)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
	}
	return nil
}

// allow reports whether a command may be sent now; see breaker.allow.
func (r *Redis) allow() bool { return r.br.Allow(r.now()) }

// report records the outcome of a command that allow let through, logs a
// change of state, and reports whether err was a Redis failure.
func (r *Redis) report(ctx context.Context, err error) (failed bool) {
	now := r.now()
	changed, failed := report(ctx, r.br, now, err)
	switch {
	case changed && failed:
		r.log.Warn("redis unavailable, skipping it", zap.Error(err), zap.Duration("backoff", r.br.Backoff()))
	case changed:
		r.log.Info("redis available again")
	}
	return failed
}

// report records the outcome of a command that b allowed. It returns whether
// the state changed (healthy to failing or back) and whether the outcome
// counted as a Redis failure. redis.Nil (a miss) is a success; an error
// caused by ctx ending is the caller's, not Redis's, and changes nothing.
func report(ctx context.Context, b *breaker.Breaker, now time.Time, err error) (changed, failed bool) {
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		return b.Succeed(), false
	case ctx.Err() != nil:
		b.Release()
		return false, false
	default:
		_, changed := b.Fail(now, err)
		return changed, true
	}
}

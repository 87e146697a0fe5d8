// Package cache is authgate's one two-tier cache: a bounded in-process tier
// per replica in front of Redis, which all replicas share. It is generic over
// the cached value; verify keeps verified tokens in it, keyed by a SHA-256 of
// the token, and federation keeps user rows, keyed by user id and Firebase
// uid. It is the only package that imports go-redis.
//
// A lookup tries the in-process tier, then Redis, then the caller's loader.
// Concurrent misses for one key share one Redis lookup and one load. The
// loader says how long its value may be cached; a Redis hit is copied into
// the in-process tier for what remains of its Redis TTL only, so no copy
// outlives the entry it came from.
//
// Redis is an accelerator, never a dependency: a Redis error does not fail a
// lookup, which falls back to the loader, and after a failure Redis is
// skipped for a back-off (see Redis). Invalidate removes a key from Redis
// and from this replica, and Set replaces it; both publish the key so that
// the other replicas, while their Redis.Run is running, drop their
// in-process copies at once. A replica that is not told (no Run, or a
// broken subscription) keeps its copy until it expires, which
// Config.LocalMaxTTL bounds.
package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// ErrLoadAborted is returned to callers that waited for a load that
// panicked or called runtime.Goexit. The panic itself continues on the
// goroutine of the caller that ran the loader.
var ErrLoadAborted = errors.New("cache load aborted")

// errEncode marks a value the codec could not encode.
var errEncode = errors.New("encode value")

// Codec turns values into bytes for Redis and back. Unmarshal must accept
// what Marshal of an earlier release wrote, or fail: an entry that does not
// decode is treated as a miss and replaced.
type Codec[V any] interface {
	Marshal(V) ([]byte, error)
	Unmarshal([]byte) (V, error)
}

// Cache is a two-tier cache of V keyed by string. Keys are used as they
// are, so callers must not pass secrets (hash a token first). It is safe for
// concurrent use.
type Cache[V any] struct {
	name        string
	local       *Local // nil: no in-process tier (local_max_bytes 0)
	space       uint32 // this cache's part of local
	ownLocal    bool   // local was built for this cache alone: Close closes it
	rdb         *Redis
	codec       Codec[V]
	prefix      string // Redis key prefix: the configured one, name, ":"
	now         func() time.Time
	localMaxTTL time.Duration
	loadTimeout time.Duration
	log         *zap.Logger
	flights     group[V]
	// changes counts Sets and invalidations, after they changed the
	// in-process tier: a Prefetch whose count moved meanwhile may hold a
	// value read before the change, and does not store it.
	changes atomic.Uint64
	m       metrics
	// bin encodes entries for the in-process tier's arena; nil keeps
	// them in the hot level only, as without an arena.
	bin    Binary[V]
	tracer trace.Tracer // nil when tracing is off
	// origin tells this cache's invalidation messages apart; unlisten
	// stops it receiving others' (both unset without Redis).
	origin   string
	unlisten func()
}

// Option adjusts a Cache or a Redis.
type Option func(*options)

type options struct {
	now    func() time.Time
	custom bool // now is not time.Now
	tp     trace.TracerProvider
	local  *Local
	binary any // a Binary[V] of the cache's V
}

func newOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, fn := range opts {
		fn(&o)
	}
	return o
}

// WithClock replaces time.Now, for tests: for a Cache it drives in-process
// expiry and the measurement of Redis round trips, for a Redis the failure
// back-off.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now, o.custom = now, true }
}

// WithTracerProvider records a span for each Redis lookup that follows an
// in-process miss (a hit in the in-process tier records nothing). Without
// it nothing is traced.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// Binary encodes values for the in-process tier's arena (see Local), and
// must be fast: Read runs on every hit that the hot level misses. Append
// appends v's encoding to dst, and reports false for a value it cannot
// encode (which then stays in the hot level only). Read decodes b, which
// it must not keep: it copies what it needs. It fails on bytes that
// Append did not write, and on those of another version.
type Binary[V any] interface {
	Append(dst []byte, v V) ([]byte, bool)
	Read(b []byte) (V, error)
}

// WithBinary keeps the cache's entries in the in-process tier's arena
// too, encoded with b, which must be a Binary of the cache's V: most
// entries then cost their encoded bytes, outside the Go heap, and a hit
// that the hot level misses decodes one. Without it a cache's entries
// live in the hot level only.
func WithBinary[V any](b Binary[V]) Option {
	return func(o *options) { o.binary = b }
}

// WithLocal puts the cache's in-process tier in l, which other caches
// share, so that one byte budget bounds them all; the process builds one
// Local from Config.LocalMaxBytes and gives it to every cache. Without it
// the cache builds a tier of its own of Config.LocalMaxBytes, and none when
// that is 0. l's clock, not the cache's, drives in-process expiry.
func WithLocal(l *Local) Option {
	return func(o *options) { o.local = l }
}

// New builds the cache called name (lowercase letters, digits and
// underscores; it labels metrics and follows the key prefix in Redis keys,
// so it must be unique per process). rdb is the shared tier; nil means an
// in-process cache only, and then codec may be nil too. reg receives the
// metrics and may be nil; log may be nil.
func New[V any](cfg Config, name string, rdb *Redis, codec Codec[V], log *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Cache[V], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !validName(name) {
		return nil, fmt.Errorf("cache name %q: must be 1 to 64 of [a-z0-9_], starting with a letter", name)
	}
	if rdb != nil && codec == nil {
		return nil, fmt.Errorf("cache %s: a codec is required with redis", name)
	}
	o := newOptions(opts)
	c := &Cache[V]{
		name:        name,
		rdb:         rdb,
		codec:       codec,
		now:         o.now,
		localMaxTTL: cfg.LocalMaxTTL,
		loadTimeout: cfg.LoadTimeout,
		log:         orNop(log).Named("cache").With(zap.String("cache", name)),
		flights:     group[V]{m: make(map[string]*flight[V])},
	}
	if rdb != nil {
		c.prefix = rdb.prefix + name + ":"
		c.origin = newOrigin()
		if o.tp != nil {
			c.tracer = o.tp.Tracer("github.com/authgate/authgate/internal/cache")
		}
	}
	var err error
	if c.m, err = newMetrics(reg, name, rdb != nil); err != nil {
		return nil, err
	}
	c.local = o.local
	if c.local == nil && cfg.LocalMaxBytes > 0 {
		if c.local, err = NewLocal(cfg.LocalMaxBytes, log, opts...); err != nil {
			return nil, fmt.Errorf("cache %s: %w", name, err)
		}
		c.ownLocal = true
	}
	if o.binary != nil {
		b, ok := o.binary.(Binary[V])
		if !ok {
			return nil, fmt.Errorf("cache %s: WithBinary of another type than the cache's values", name)
		}
		if c.local != nil && c.local.arena != nil {
			c.bin = b // without an arena, the hot level is all there is
		}
	}
	if c.local != nil {
		c.space = c.local.register(&space{bytes: c.m.localBytes, evictions: c.m.evictions, tiered: c.bin != nil})
	}
	if rdb != nil {
		c.unlisten = rdb.listen(name, &listener{origin: c.origin, drop: c.dropLocal, clear: c.clearLocal})
	}
	return c, nil
}

// GetOrLoad returns the value for key from the first tier that has it, or
// else from load, which returns the value and how long it may be cached; a
// TTL of zero or less caches nothing. An error from load is returned as it
// is and nothing is cached.
//
// Concurrent calls for one key that miss share one Redis lookup and one call
// of load. load runs on the goroutine of the first caller, with a context
// that keeps ctx's values but not its cancellation and ends after
// Config.LoadTimeout, because the other callers wait for its result; each of
// them stops waiting when its own ctx ends. A hit in the in-process tier does
// not allocate.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, load func(ctx context.Context) (V, time.Duration, error)) (V, error) {
	return c.GetOrLoadWith(ctx, key, nil, load)
}

// GetOrLoadWith is GetOrLoad, and when key misses the in-process tier it
// sends the lookups that also names (in other caches on the same Redis:
// the user row of a token, say) in the same pipeline as key's own, so that
// both cost one round trip; what they find is stored in their caches'
// in-process tiers. also is called at most once, and only then.
func (c *Cache[V]) GetOrLoadWith(ctx context.Context, key string, also func() []*Prefetch, load func(ctx context.Context) (V, time.Duration, error)) (V, error) {
	if it, ok := c.getLocal(key); ok {
		c.m.localHit.Inc()
		return it.v, nil
	}
	c.m.localMiss.Inc()
	return c.loadShared(ctx, key, also, load)
}

// GetLocal returns the value for key from the in-process tier only,
// counting a hit; a miss is left for the GetOrLoad that follows to count.
// It lets a caller build its loader only when it is needed.
func (c *Cache[V]) GetLocal(key string) (V, bool) {
	if it, ok := c.getLocal(key); ok {
		c.m.localHit.Inc()
		return it.v, true
	}
	var zero V
	return zero, false
}

// loadShared fills key once for all concurrent callers.
func (c *Cache[V]) loadShared(ctx context.Context, key string, also func() []*Prefetch, load func(context.Context) (V, time.Duration, error)) (v V, err error) {
	if err := ctx.Err(); err != nil {
		return v, err
	}
	f, leader := c.flights.join(key)
	if !leader {
		return f.wait(ctx)
	}
	finished := false
	defer func() {
		if !finished { // load panicked or called runtime.Goexit
			c.m.loadError.Inc()
			c.flights.finish(key, f, v, ErrLoadAborted)
		}
	}()
	v, err = c.fill(ctx, key, f, also, load)
	finished = true
	c.flights.finish(key, f, v, err)
	return v, err
}

// fill looks key up in Redis, else loads it, and stores what it found in the
// tiers that lack it, unless the key was invalidated or set meanwhile.
func (c *Cache[V]) fill(ctx context.Context, key string, f *flight[V], also func() []*Prefetch, load func(context.Context) (V, time.Duration, error)) (V, error) {
	// The flight that stored key may have ended between our miss and join.
	if it, ok := c.getLocal(key); ok {
		return it.v, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.loadTimeout)
	defer cancel()
	var with []*Prefetch
	if also != nil && c.rdb != nil {
		with = also()
	}
	if v, ttl, ok := c.tracedGetRedis(ctx, key, with); ok {
		if !c.flights.stale(f) {
			c.setLocal(key, v, ttl)
		}
		return v, nil
	}
	v, ttl, err := load(ctx)
	if err != nil {
		c.m.loadError.Inc()
		return v, err
	}
	c.m.loadOK.Inc()
	if ttl <= 0 || c.flights.stale(f) {
		return v, nil
	}
	if err := c.setRedis(ctx, key, v, ttl); errors.Is(err, errEncode) {
		c.log.Warn("value not stored in redis", zap.Error(err))
	}
	c.setLocal(key, v, ttl)
	return v, nil
}

// Get returns the value for key from the in-process tier or Redis, without
// loading it. A Redis error is a miss.
func (c *Cache[V]) Get(ctx context.Context, key string) (V, bool) {
	if it, ok := c.getLocal(key); ok {
		c.m.localHit.Inc()
		return it.v, true
	}
	c.m.localMiss.Inc()
	v, ttl, ok := c.getRedis(ctx, key, nil)
	if ok {
		c.setLocal(key, v, ttl)
	}
	return v, ok
}

// Set stores v under key in both tiers for ttl; a ttl of zero or less
// stores nothing. A load of key in progress is not stored over it. Other
// replicas are told to drop their in-process copies, so that their next
// lookup reads v from Redis. The in-process tier is always written; the
// error reports a value the codec could not encode or a failed (or, during a
// back-off, skipped) Redis write or publish.
func (c *Cache[V]) Set(ctx context.Context, key string, v V, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	c.flights.forget(key)
	err := c.setRedis(ctx, key, v, ttl)
	c.setLocal(key, v, ttl)
	c.changes.Add(1)
	if err != nil || c.rdb == nil {
		return err
	}
	pipe := c.rdb.client.Pipeline()
	if err := c.rdb.publishCmds(ctx, pipe, c.name, c.origin, []string{key}); err != nil {
		return fmt.Errorf("cache %s: publish: %w", c.name, err)
	}
	octx, cancel := c.rdb.bound(ctx)
	c.rdb.trips.Add(1)
	_, err = pipe.Exec(octx)
	cancel()
	if c.rdb.report(ctx, err) {
		c.m.redisError.Inc()
	}
	if err != nil {
		return fmt.Errorf("cache %s: publish: %w", c.name, err)
	}
	return nil
}

// SetLocal stores v under key in the in-process tier only, for ttl (capped
// by Config.LocalMaxTTL). It is meant for short-lived negative results,
// which must not be shared through Redis: each replica finds them out for
// itself.
func (c *Cache[V]) SetLocal(key string, v V, ttl time.Duration) {
	c.setLocal(key, v, ttl)
}

// Invalidate removes keys from Redis and from this replica's in-process
// tier, and keeps loads of them in progress from storing their result. It
// publishes the keys, so that other replicas whose Redis.Run is running
// drop their in-process copies too; a replica that is not told serves its
// copy until it expires (at most Config.LocalMaxTTL when set). Redis is
// tried even during a back-off; the error reports that the Redis entries,
// or other replicas' copies, may still be there.
func (c *Cache[V]) Invalidate(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		c.flights.forget(k)
	}
	var err error
	if c.rdb != nil && len(keys) > 0 {
		// One DEL per key: a multi-key DEL fails across Cluster slots.
		// The message goes in the same round trip, after the DELs, so
		// that a replica told to drop a key finds it gone from Redis.
		pipe := c.rdb.client.Pipeline()
		for _, k := range keys {
			pipe.Del(ctx, c.prefix+k)
		}
		if err = c.rdb.publishCmds(ctx, pipe, c.name, c.origin, keys); err == nil {
			octx, cancel := c.rdb.bound(ctx)
			c.rdb.trips.Add(1)
			_, err = pipe.Exec(octx)
			cancel()
		}
		if c.rdb.report(ctx, err) {
			c.m.redisError.Inc()
		}
	}
	// After Redis, so that a lookup in between cannot copy the old Redis
	// entry back into this tier.
	c.invalidateLocal(keys)
	c.changes.Add(1)
	if err != nil {
		return fmt.Errorf("cache %s: invalidate in redis: %w", c.name, err)
	}
	return nil
}

// Check reports the state of the cache for health: nil, or an error
// wrapping ErrRedisUnavailable while the cache runs degraded, without Redis
// (see Redis.Check).
func (c *Cache[V]) Check(ctx context.Context) error {
	return c.rdb.Check(ctx)
}

// Close stops the in-process tier's periodic clean-up goroutine and the
// delivery of other replicas' invalidations to it. It does not close the
// Redis, which may be shared. The cache keeps working; expired entries are
// then removed by later writes.
func (c *Cache[V]) Close() error {
	if c.ownLocal {
		c.local.Close()
	}
	if c.unlisten != nil {
		c.unlisten()
	}
	return nil
}

// dropLocal removes keys that another cache invalidated or set from the
// in-process tier, and keeps loads of them in progress from storing what
// they may have read before the change.
func (c *Cache[V]) dropLocal(keys []string) {
	for _, k := range keys {
		c.flights.forget(k)
	}
	c.invalidateLocal(keys)
	c.changes.Add(1)
}

// clearLocal empties the in-process tier after invalidations were missed.
func (c *Cache[V]) clearLocal() {
	c.flights.forgetAll()
	if c.local != nil {
		c.local.clear(c.space)
	}
	c.changes.Add(1)
}

// getRedis looks key up in Redis. ok is false on a miss, an error or a
// back-off. ttl is what remains of the entry's Redis TTL, less the round
// trip, so that a copy made from it expires no later than the entry; it is
// zero or less if the entry has no TTL or is about to expire.
// tracedGetRedis is getRedis inside a "cache.redis_get" span when tracing
// is on.
func (c *Cache[V]) tracedGetRedis(ctx context.Context, key string, with []*Prefetch) (V, time.Duration, bool) {
	if c.tracer == nil {
		return c.getRedis(ctx, key, with)
	}
	ctx, span := c.tracer.Start(ctx, "cache.redis_get", trace.WithAttributes(attribute.String("cache", c.name)))
	v, ttl, ok := c.getRedis(ctx, key, with)
	span.SetAttributes(attribute.Bool("hit", ok))
	span.End()
	return v, ttl, ok
}

func (c *Cache[V]) getRedis(ctx context.Context, key string, with []*Prefetch) (v V, ttl time.Duration, ok bool) {
	if c.rdb == nil {
		return v, 0, false
	}
	if !c.rdb.allow() {
		c.m.redisSkipped.Inc()
		for _, p := range with {
			p.skipped()
		}
		return v, 0, false
	}
	start := c.now()
	octx, cancel := c.rdb.bound(ctx)
	defer cancel()
	pipe := c.rdb.client.Pipeline()
	k := c.redisKey(key)
	get, pttl := pipe.Get(octx, k), pipe.PTTL(octx, k)
	for _, p := range with {
		p.queue(octx, pipe)
	}
	c.rdb.trips.Add(1)
	_, err := pipe.Exec(octx)
	failed := c.rdb.report(ctx, err)
	for _, p := range with {
		p.finish(failed, start)
	}
	if failed {
		c.m.redisError.Inc()
		return v, 0, false
	}
	return c.result(get, pttl, start)
}

// Prefetch is a lookup of one key of one cache, to be sent in another
// cache's Redis pipeline (see GetOrLoadWith). A nil *Prefetch is no lookup.
type Prefetch struct {
	c    prefetcher
	key  string
	get  *redis.StringCmd
	pttl *redis.DurationCmd
	// changes is the cache's count of Sets and invalidations when the
	// lookup was made: a different count at the answer means it may be
	// stale, and it is not stored.
	changes uint64
}

// prefetcher is the cache a Prefetch belongs to, whatever its value type.
type prefetcher interface {
	redisKey(key string) string
	finishPrefetch(p *Prefetch, failed bool, start time.Time)
	skipPrefetch()
}

func (p *Prefetch) queue(ctx context.Context, pipe redis.Pipeliner) {
	k := p.c.redisKey(p.key)
	p.get, p.pttl = pipe.Get(ctx, k), pipe.PTTL(ctx, k)
}

func (p *Prefetch) finish(failed bool, start time.Time) { p.c.finishPrefetch(p, failed, start) }

func (p *Prefetch) skipped() { p.c.skipPrefetch() }

// Prefetch returns the lookup of key for another cache's pipeline, or nil
// when there is nothing to fetch: no Redis, or key already in this
// replica's in-process tier.
func (c *Cache[V]) Prefetch(key string) *Prefetch {
	if c.rdb == nil {
		return nil
	}
	if _, ok := c.getLocal(key); ok {
		return nil
	}
	return &Prefetch{c: c, key: key, changes: c.changes.Load()}
}

func (c *Cache[V]) redisKey(key string) string { return c.prefix + key }

func (c *Cache[V]) skipPrefetch() { c.m.redisSkipped.Inc() }

func (c *Cache[V]) finishPrefetch(p *Prefetch, failed bool, start time.Time) {
	if failed {
		c.m.redisError.Inc()
		return
	}
	if v, ttl, ok := c.result(p.get, p.pttl, start); ok && c.changes.Load() == p.changes {
		c.setLocal(p.key, v, ttl)
	}
}

// result decodes a GET+PTTL pair sent at start and counts the outcome.
func (c *Cache[V]) result(get *redis.StringCmd, pttl *redis.DurationCmd, start time.Time) (v V, ttl time.Duration, ok bool) {
	b, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		c.m.redisMiss.Inc()
		return v, 0, false
	}
	if err != nil { // ctx ended: not Redis's failure, but no answer either
		c.m.redisError.Inc()
		return v, 0, false
	}
	if v, err = c.codec.Unmarshal(b); err != nil {
		c.m.redisError.Inc()
		c.log.Warn("undecodable redis entry, treating it as a miss", zap.Error(err))
		return v, 0, false
	}
	c.m.redisHit.Inc()
	// PTTL answers -1 (no TTL) or -2 (gone) as -1ns and -2ns, and rounds
	// down to the millisecond, hence the millisecond less.
	return v, pttl.Val() - c.now().Sub(start) - time.Millisecond, true
}

// setRedis writes v under key with ttl, in whole milliseconds.
func (c *Cache[V]) setRedis(ctx context.Context, key string, v V, ttl time.Duration) error {
	if c.rdb == nil {
		return nil
	}
	ttl = ttl.Truncate(time.Millisecond)
	if ttl <= 0 {
		return nil // too short to be worth sharing
	}
	b, err := c.codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("cache %s: %w: %w", c.name, errEncode, err)
	}
	if !c.rdb.allow() {
		return fmt.Errorf("cache %s: %w", c.name, ErrRedisUnavailable)
	}
	octx, cancel := c.rdb.bound(ctx)
	c.rdb.trips.Add(1)
	err = c.rdb.client.Set(octx, c.prefix+key, b, ttl).Err()
	cancel()
	if c.rdb.report(ctx, err) {
		c.m.redisError.Inc()
	}
	if err != nil {
		return fmt.Errorf("cache %s: redis set: %w", c.name, err)
	}
	return nil
}

// setLocal writes v under key in the in-process tier for ttl, capped by
// Config.LocalMaxTTL.
func (c *Cache[V]) setLocal(key string, v V, ttl time.Duration) {
	if c.localMaxTTL > 0 {
		ttl = min(ttl, c.localMaxTTL)
	}
	if ttl <= 0 || c.local == nil {
		return
	}
	it := &item[V]{v: v, key: key, ttl: ttl, space: c.space}
	it.w = weigh(it)
	// The arena first, then the hot level: see getArena.
	if c.bin != nil {
		bp := arenaBufs.Get().(*[]byte)
		b, ok := c.bin.Append((*bp)[:0], v)
		if ok {
			ok = c.local.setArena(c.space, key, ttl, b)
			*bp = b[:0]
		}
		arenaBufs.Put(bp)
		if !ok {
			// Too large or not encodable: no older value may stay
			// behind in the arena to come back later.
			c.local.removeArena(c.space, key)
		}
	}
	c.local.set(c.space, key, it)
}

// arenaBufs recycles the buffers values are encoded in for the arena.
var arenaBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

// getLocal looks key up in the in-process tier, if there is one.
func (c *Cache[V]) getLocal(key string) (*item[V], bool) {
	if c.local == nil {
		return nil, false
	}
	if lv, ok := c.local.get(c.space, key); ok {
		// Not another key with the same hash, maybe of a cache of
		// another V.
		if it, ok := lv.(*item[V]); ok && it.space == c.space && it.key == key {
			return it, true
		}
	}
	if c.bin == nil {
		return nil, false
	}
	return c.getArena(key)
}

// getArena looks key up in the arena and moves what it finds to the hot
// level, for what remains of its time. The move is made under the arena's
// lock, and Set, Invalidate and a clear change the arena before the hot
// level: a lookup that found the old value in the arena has then put it in
// the hot level before they replace or drop it there, so that none of them
// is undone once it has returned (TestArenaChangesRacePromotion).
func (c *Cache[V]) getArena(key string) (*item[V], bool) {
	var it *item[V]
	c.local.getArena(c.space, key, func(b []byte, ttl time.Duration) bool {
		v, err := c.bin.Read(b)
		if err != nil {
			return false
		}
		it = &item[V]{v: v, key: key, ttl: ttl, space: c.space}
		it.w = weigh(it)
		c.local.set(c.space, key, it)
		return true
	})
	if it == nil {
		return nil, false
	}
	return it, true
}

// invalidateLocal drops keys from the in-process tier, if there is one.
func (c *Cache[V]) invalidateLocal(keys []string) {
	if c.local == nil {
		return
	}
	for _, k := range keys {
		c.local.invalidate(c.space, k)
	}
}

// metrics are resolved to label values once, so that counting a hit does
// not allocate.
type metrics struct {
	localHit, localMiss                           prometheus.Counter
	redisHit, redisMiss, redisError, redisSkipped prometheus.Counter
	loadOK, loadError                             prometheus.Counter
	localBytes                                    prometheus.Gauge
	evictions                                     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, name string, withRedis bool) (metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_requests_total",
		Help: "Cache lookups by cache, tier (local, redis) and result (hit, miss, error, skipped). " +
			"Redis errors include failed writes; skipped counts lookups not sent to Redis during a failure back-off.",
	}, []string{"cache", "tier", "result"})
	loads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_loads_total",
		Help: "Loads after a miss in every tier, by cache and result (ok, error).",
	}, []string{"cache", "result"})
	bytes := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "cache_local_bytes",
		Help: "Estimated heap held by each cache's in-process entries; the caches share cache.local_max_bytes.",
	}, []string{"cache"})
	evictions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_evictions_total",
		Help: "In-process entries evicted, or not admitted, to keep within cache.local_max_bytes (verify's negative cache: within cache.negative_entries), by cache.",
	}, []string{"cache"})
	if reg != nil {
		var err error
		if requests, err = register(reg, requests); err != nil {
			return metrics{}, err
		}
		if loads, err = register(reg, loads); err != nil {
			return metrics{}, err
		}
		if bytes, err = register(reg, bytes); err != nil {
			return metrics{}, err
		}
		if evictions, err = register(reg, evictions); err != nil {
			return metrics{}, err
		}
	}
	m := metrics{
		localHit:   requests.WithLabelValues(name, "local", "hit"),
		localMiss:  requests.WithLabelValues(name, "local", "miss"),
		loadOK:     loads.WithLabelValues(name, "ok"),
		loadError:  loads.WithLabelValues(name, "error"),
		localBytes: bytes.WithLabelValues(name),
		evictions:  evictions.WithLabelValues(name),
	}
	if withRedis {
		m.redisHit = requests.WithLabelValues(name, "redis", "hit")
		m.redisMiss = requests.WithLabelValues(name, "redis", "miss")
		m.redisError = requests.WithLabelValues(name, "redis", "error")
		m.redisSkipped = requests.WithLabelValues(name, "redis", "skipped")
	}
	return m, nil
}

// register registers c, or returns the vector another cache registered
// under the same name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < 'a' || b > 'z') && (b < '0' || b > '9') && b != '_' {
			return false
		}
	}
	return true
}

func orNop(log *zap.Logger) *zap.Logger {
	if log == nil {
		return zap.NewNop()
	}
	return log
}

// otterClock adapts an injected clock. It never ticks, so the in-process
// tier does without periodic clean-ups: expired entries are never returned,
// and writes remove them.
type otterClock func() time.Time

func (f otterClock) NowNano() int64                    { return f().UnixNano() }
func (otterClock) Tick(time.Duration) <-chan time.Time { return nil }

// otterLogger sends otter's warnings to zap instead of slog.Default.
type otterLogger struct{ log *zap.Logger }

func (l otterLogger) Warn(_ context.Context, msg string, err error) {
	l.log.Warn(msg, zap.Error(err))
}

func (l otterLogger) Error(_ context.Context, msg string, err error) {
	l.log.Error(msg, zap.Error(err))
}

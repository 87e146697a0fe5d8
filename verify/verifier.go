package verify

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/configerr"
)

// Config configures every issuer authgate accepts and the cache of verified
// tokens.
type Config struct {
	// Legacy is the platform's own JWT issuer.
	Legacy LegacyConfig `yaml:"legacy"`
	// Firebase is one Firebase project's ID tokens and session cookies.
	Firebase FirebaseConfig `yaml:"firebase"`
	// Cache configures the cache of verified tokens.
	Cache CacheConfig `yaml:"cache"`
	// MaxTokenBytes refuses larger tokens before any decoding. Real ID
	// tokens are 1 to 2 KiB. Default 8 KiB (MaxTokenBytes); 1 KiB to
	// 64 KiB.
	MaxTokenBytes int `yaml:"max_token_bytes"`
}

// CacheConfig configures how long verification results are kept.
type CacheConfig struct {
	// TTL bounds how long a verified token is cached (in-process and in
	// Redis); an entry never outlives the token's exp. Default 5m; 0 (or
	// a negative value) turns the cache off.
	TTL time.Duration `yaml:"ttl"`
	// NegativeTTL keeps "invalid" and "expired" results in-process only, so
	// that a client retrying a bad token costs little. Default 5s; 0 (or
	// a negative value) turns it off.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// NegativeEntries bounds the in-process negative cache, apart from the
	// positive one so that a flood of junk cannot evict valid tokens.
	// Default 10000; 0 turns the negative cache off.
	NegativeEntries int `yaml:"negative_entries"`
}

// DefaultConfig returns the verification defaults: every issuer off, the
// cache on.
func DefaultConfig() Config {
	return Config{
		Legacy:        DefaultLegacyConfig(),
		Firebase:      DefaultFirebaseConfig(),
		Cache:         CacheConfig{TTL: 5 * time.Minute, NegativeTTL: 5 * time.Second, NegativeEntries: 10000},
		MaxTokenBytes: MaxTokenBytes,
	}
}

// Validate reports every problem, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	if !c.Legacy.Enabled && !c.Firebase.Enabled {
		errs = append(errs, errors.New("legacy.enabled: no issuer is enabled; enable legacy, firebase or both"))
	}
	errs = append(errs,
		configerr.Prefix("legacy.", c.Legacy.Validate()),
		configerr.Prefix("firebase.", c.Firebase.Validate()))
	if c.Legacy.Enabled && c.Firebase.Enabled && c.Firebase.ProjectID != "" &&
		(c.Legacy.Issuer == firebaseIDTokenIssuer+c.Firebase.ProjectID || c.Legacy.Issuer == firebaseSessionIssuer+c.Firebase.ProjectID) {
		errs = append(errs, errors.New("legacy.issuer: must differ from the Firebase issuers"))
	}
	if c.Cache.NegativeEntries < 0 {
		errs = append(errs, errors.New("cache.negative_entries: must not be negative"))
	}
	if c.MaxTokenBytes < 1<<10 || c.MaxTokenBytes > maxTokenBytesLimit {
		errs = append(errs, fmt.Errorf("max_token_bytes: %d is outside 1024..%d", c.MaxTokenBytes, maxTokenBytesLimit))
	}
	return errors.Join(errs...)
}

// issuer is one configured token issuer.
type issuer interface {
	// owns reports whether the token's unverified iss names this issuer.
	owns(t *token) bool
	// verify checks t and returns its identity, without Claims, which
	// the caller fills in.
	verify(ctx context.Context, t *token, now time.Time) (Identity, error)
	// subjectClaim is the claim that holds the user id.
	subjectClaim() string
}

// Verifier checks tokens against every configured issuer and caches the
// results. The issuer is chosen by the token's unverified iss claim; only
// that issuer's keys and algorithms are then used. It is safe for
// concurrent use.
//
// The issuers, their keys and secrets are a Generation, which Prepare and
// Use replace while the Verifier serves (a configuration reload); the
// caches, the revocation checks and the metrics belong to the Verifier and
// outlive generations.
type Verifier struct {
	gen atomic.Pointer[Generation]
	// reloaded tells Run that Use swapped the generation.
	reloaded chan struct{}
	now      func() time.Time
	log      *zap.Logger
	m        *verifyMetrics
	// parsed recycles the tokens that verifyUncached parses.
	parsed   tokenPool
	ttl      time.Duration
	negTTL   time.Duration
	tokens   *cache.Cache[packed] // nil when the cache is off
	negative *cache.Cache[string] // reason of a recent failure
	negLocal *cache.Local         // negative's own in-process tier
	revoke   *revocation          // nil unless Firebase revocation is on
	users    *cache.Cache[UserState]
	tracer   trace.Tracer // nil when tracing is off
	// trimClaims is set by WithClaims: identities keep only the claims
	// their generation names.
	trimClaims bool
	// prefetch names the user-row lookup to pipeline with a token's.
	prefetch func(Identity) *cache.Prefetch
}

// Generation is one configuration of a Verifier's issuers: their keys,
// secrets and claims. It is immutable, and safe for concurrent use; a
// request that holds one verifies under it to the end, even when the
// Verifier has moved on to another.
type Generation struct {
	v       *Verifier
	issuers []namedIssuer
	keySets []*keySet
	// maxTokenBytes refuses larger tokens before the cache key is hashed.
	maxTokenBytes int
	// keepClaims, when trimClaims is set, are the only claims kept in an
	// identity's Claims.
	keepClaims []string
	// ns starts every cache key of this generation: a fingerprint of what
	// makes a token valid (issuers, secrets, keys, kept claims). A
	// generation that would judge a token differently reads none of the
	// entries of another, in this replica or in Redis, while replicas
	// with the same configuration share theirs.
	ns [nsLen]byte
}

type namedIssuer struct {
	provider Provider
	issuer
}

// Option adjusts a Verifier.
type Option func(*options)

type options struct {
	now     func() time.Time
	cache   cache.Config
	redis   *cache.Redis
	local   *cache.Local
	records UserRecords
	tp      trace.TracerProvider
	// claims are the claims kept in identities when trimClaims is set.
	claims     []string
	trimClaims bool
	prefetch   func(Identity) *cache.Prefetch
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithCache shares verified tokens through rdb (nil: in-process only) with
// the given cache settings.
func WithCache(cfg cache.Config, rdb *cache.Redis) Option {
	return func(o *options) { o.cache, o.redis = cfg, rdb }
}

// WithLocal puts the in-process tiers of the token cache and of the
// Firebase user-record cache in l, the process's shared in-process tier
// (see cache.WithLocal). Without it each builds its own, of
// cache.local_max_bytes. The negative cache always has its own, bounded by
// cache.negative_entries, so that a flood of bad tokens cannot evict
// valid ones.
func WithLocal(l *cache.Local) Option { return func(o *options) { o.local = l } }

// WithTracerProvider turns tracing on: Verify records a span, with a child
// span for a verification that the cache could not answer. Without it (or
// with nil) tracing is off and costs nothing.
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithUserRecords is the Firebase Admin SDK seam used for revocation and
// disabled-user checks; it is required when firebase.revocation is on.
func WithUserRecords(r UserRecords) Option { return func(o *options) { o.records = r } }

// WithUserPrefetch names, for a token that is in neither in-process tier,
// the user-row lookup (federation's) to send in the same Redis pipeline as
// the token's own, so that a replica's first sight of a token costs one
// round trip. It is given the token's unverified provider and subject:
// they only choose which entry to read, never what is trusted.
func WithUserPrefetch(f func(id Identity) *cache.Prefetch) Option {
	return func(o *options) { o.prefetch = f }
}

// WithClaims keeps only the named claims in Identity.Claims, the ones that
// route requirements read; without it every claim is kept. A decoded
// claims map is the largest part of a cached identity (about 600 bytes of
// a Firebase token's), so keeping only what is read is what lets the
// in-process tier hold many tokens in little memory. Replicas that share
// Redis must be given the same names.
func WithClaims(names []string) Option {
	return func(o *options) { o.claims, o.trimClaims = names, true }
}

// New builds a Verifier from cfg. reg receives the verification metrics; it
// may be nil.
func New(cfg Config, log *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	o := options{now: time.Now, cache: cache.DefaultConfig()}
	for _, f := range opts {
		f(&o)
	}
	v := &Verifier{now: o.now, log: log.Named("verify"), ttl: cfg.Cache.TTL, negTTL: cfg.Cache.NegativeTTL, reloaded: make(chan struct{}, 1)}
	v.trimClaims, v.prefetch = o.trimClaims, o.prefetch
	if o.tp != nil {
		v.tracer = o.tp.Tracer("github.com/authgate/authgate/verify")
	}
	m, err := newVerifyMetrics(reg, v)
	if err != nil {
		return nil, err
	}
	v.m = m
	if cfg.Firebase.Enabled && cfg.Firebase.Revocation.Enabled && o.records == nil {
		return nil, errors.New("firebase.revocation: enabled but no Firebase Admin client was given")
	}
	g, err := v.newGeneration(cfg, o.claims, nil)
	if err != nil {
		return nil, err
	}
	v.gen.Store(g)
	cacheOpts := []cache.Option{cache.WithClock(v.now)}
	if o.tp != nil {
		cacheOpts = append(cacheOpts, cache.WithTracerProvider(o.tp))
	}
	sharedOpts := cacheOpts
	if o.local != nil {
		sharedOpts = append(slices.Clip(cacheOpts), cache.WithLocal(o.local))
	}
	if v.ttl > 0 {
		if v.tokens, err = cache.New(o.cache, "tokens", o.redis, cache.Codec[packed](packedJSON{}), log, reg, append(slices.Clip(sharedOpts), cache.WithBinary[packed](packedBinary{}))...); err != nil {
			return nil, fmt.Errorf("token cache: %w", err)
		}
	}
	if v.negTTL > 0 && cfg.Cache.NegativeEntries > 0 {
		// In-process only, bounded apart from the shared tiers.
		nc := o.cache
		nc.LocalMaxTTL, nc.Redis = 0, cache.RedisConfig{}
		if v.negLocal, err = cache.NewLocalCount(cfg.Cache.NegativeEntries, log, cacheOpts...); err != nil {
			return nil, fmt.Errorf("negative token cache: %w", err)
		}
		if v.negative, err = cache.New[string](nc, "tokens_negative", nil, nil, log, reg, append(slices.Clip(cacheOpts), cache.WithLocal(v.negLocal))...); err != nil {
			return nil, fmt.Errorf("negative token cache: %w", err)
		}
	}
	if cfg.Firebase.Enabled && cfg.Firebase.Revocation.Enabled {
		if v.users, err = cache.New(o.cache, "firebase_users", o.redis, cache.Codec[UserState](cache.JSON[UserState]{}), log, reg, append(slices.Clip(sharedOpts), cache.WithBinary[UserState](userStateBinary{}))...); err != nil {
			return nil, fmt.Errorf("user record cache: %w", err)
		}
		v.revoke = newRevocation(cfg.Firebase.Revocation, o.records, v.users)
	}
	return v, nil
}

// newGeneration builds the issuers of cfg, reusing prev's key sets (and so
// their keys) where their configuration is unchanged.
func (v *Verifier) newGeneration(cfg Config, claims []string, prev *Generation) (*Generation, error) {
	g := &Generation{v: v, maxTokenBytes: cfg.MaxTokenBytes, keepClaims: slices.Clone(claims)}
	old := map[string]*keySet{}
	if prev != nil {
		for _, k := range prev.keySets {
			old[k.name] = k
		}
	}
	newKeys := func(name string, c KeySetConfig) *keySet {
		k := old[name]
		if k == nil || k.cfg != c {
			k = newKeySet(name, c, v.now, v.log, v.m)
		}
		g.keySets = append(g.keySets, k)
		return k
	}
	var legacy *legacyVerifier
	if cfg.Firebase.Enabled {
		for _, is := range firebaseIssuers(cfg.Firebase, newKeys) {
			g.issuers = append(g.issuers, namedIssuer{ProviderFirebase, is})
		}
	}
	if cfg.Legacy.Enabled {
		l, err := newLegacy(cfg.Legacy, newKeys)
		if err != nil {
			return nil, configerr.Prefix("legacy.", err)
		}
		legacy = l
		g.issuers = append(g.issuers, namedIssuer{ProviderLegacy, l})
	}
	ns, err := fingerprint(cfg, legacy, g.keepClaims, v.trimClaims)
	if err != nil {
		return nil, err
	}
	g.ns = ns
	return g, nil
}

// Prepare builds, without using it yet, the generation of cfg: its
// issuers, their secrets and key files read now, and claims in place of
// the names given to WithClaims (ignored without it). Key sets whose
// configuration is unchanged keep their keys. cfg.Cache and
// cfg.Firebase.Revocation keep the values New was given: the caches and
// the Firebase Admin client outlive generations. The error names the key
// at fault; nothing changes then.
func (v *Verifier) Prepare(cfg Config, claims []string) (*Generation, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Firebase.Enabled && cfg.Firebase.Revocation.Enabled && v.revoke == nil {
		return nil, errors.New("firebase.revocation.enabled: revocation checks were off at start; turning them on needs a restart")
	}
	return v.newGeneration(cfg, claims, v.gen.Load())
}

// Use makes g, from Prepare, the generation that Verify and the readiness
// checks use, and that Run refreshes the keys of. Verifications already
// under way finish under the generation they started with. Cached results
// of another generation are not read any more (see Generation.ns).
func (v *Verifier) Use(g *Generation) {
	if g.v != v {
		panic("verify: Use of another Verifier's generation")
	}
	v.gen.Store(g)
	select {
	case v.reloaded <- struct{}{}:
	default: // Run has a wake-up pending already
	}
}

// Current returns the generation in use.
func (v *Verifier) Current() *Generation { return v.gen.Load() }

// Prefetch fetches the keys of g's key sets that have none yet, so that
// requests under g do not wait for them (see fetchAll).
func (g *Generation) Prefetch(ctx context.Context) error {
	var missing []*keySet
	for _, k := range g.keySets {
		if k.snap.Load() == nil {
			missing = append(missing, k)
		}
	}
	return fetchAll(ctx, missing)
}

// fetchAll refreshes sets at once, not one after the other: a start waits
// for the slowest endpoint (ID tokens and session cookies are two Google
// endpoints) rather than for the sum. It returns the errors of every set
// that failed, in the sets' order.
func fetchAll(ctx context.Context, sets []*keySet) error {
	errs := make([]error, len(sets))
	var wg sync.WaitGroup
	for i, k := range sets {
		wg.Go(func() {
			if err := k.refresh(ctx); err != nil {
				errs[i] = fmt.Errorf("%s keys: %w", k.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// nsLen is the length of a generation's cache key prefix: 16 hex digits
// of the fingerprint, then a dot.
const nsLen = 17

// fingerprint hashes what decides whether a token is valid and what its
// cached identity holds: the issuers' configuration, the legacy secrets
// and public keys as read, and the kept claim names. The cache
// configuration is left out: it changes how long, not what, is cached.
// Secrets go in through PBKDF2, so that the prefix, which Redis shows,
// is no quick test of a guessed secret.
func fingerprint(cfg Config, legacy *legacyVerifier, claims []string, trim bool) ([nsLen]byte, error) {
	var out [nsLen]byte
	cfg.Cache = CacheConfig{}
	cfg.Firebase.Revocation = RevocationConfig{}
	cfg.MaxTokenBytes = 0
	// The secrets and keys themselves go in below, not where they were
	// read from: replicas that mount them elsewhere still share.
	cfg.Legacy.Secrets, cfg.Legacy.SecretFiles, cfg.Legacy.PublicKeyFiles = nil, nil, nil
	h := sha256.New()
	// secret.Secret marshals redacted: the values go in below.
	if err := json.NewEncoder(h).Encode(struct {
		Cfg    Config
		Claims []string
		Trim   bool
	}{cfg, claims, trim}); err != nil {
		return out, fmt.Errorf("fingerprint: %w", err)
	}
	if legacy != nil {
		if len(legacy.secrets) > 0 {
			var all []byte
			for _, s := range legacy.secrets {
				all = binary.BigEndian.AppendUint32(all, uint32(len(s)))
				all = append(all, s...)
			}
			k, err := pbkdf2.Key(sha256.New, string(all), []byte("authgate verify cache namespace"), 4096, 32)
			if err != nil {
				return out, fmt.Errorf("fingerprint: %w", err)
			}
			h.Write(k)
		}
		for _, pk := range legacy.publicKeys {
			der, err := x509.MarshalPKIXPublicKey(publicOf(pk))
			if err != nil {
				return out, fmt.Errorf("fingerprint: %w", err)
			}
			h.Write(der)
		}
	}
	sum := h.Sum(nil)
	hex.Encode(out[:nsLen-1], sum[:(nsLen-1)/2])
	out[nsLen-1] = '.'
	return out, nil
}

// cacheKey is the generation's prefix, then the SHA-256 of the token in
// unpadded base64url: the token itself is never stored. 60 bytes, which
// the allocator rounds to the 64 that the hex digest alone took.
func (g *Generation) cacheKey(raw string) string {
	// Hashing the string's bytes in place saves copying the token; Sum256
	// neither keeps nor modifies them.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	// Encoded into an array on the stack: one allocation, the string's.
	var buf [nsLen + sumLen]byte
	copy(buf[:], g.ns[:])
	base64.RawURLEncoding.Encode(buf[nsLen:], sum[:])
	return string(buf[:])
}

// sumLen is the length of a SHA-256 in unpadded base64url.
const sumLen = (8*sha256.Size + 5) / 6

// Verify checks token and returns the identity it proves. Errors wrap one of
// the package's sentinel errors. A token verified before is answered from
// the cache; revocation (when on) is checked on every call against the
// cached user record.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	return v.gen.Load().Verify(ctx, raw)
}

// Verify is Verifier.Verify under generation g, whichever generation the
// Verifier uses now.
func (g *Generation) Verify(ctx context.Context, raw string) (Identity, error) {
	v := g.v
	if v.tracer == nil {
		return g.verify(ctx, raw, nil)
	}
	ctx, span := v.tracer.Start(ctx, "verify.Verify")
	defer span.End()
	cached := "hit"
	if v.tokens == nil {
		cached = "off"
	}
	id, err := g.verify(ctx, raw, &cached)
	// Closed sets only: never the token, the subject or the email.
	span.SetAttributes(
		attribute.String("verify.result", Reason(err)),
		attribute.String("verify.cache", cached),
	)
	if id.Provider != "" {
		span.SetAttributes(attribute.String("verify.provider", string(id.Provider)))
	}
	return id, err
}

// verify is Verify; cached, when not nil, is set to "miss" when the token
// was verified rather than answered from the cache.
func (g *Generation) verify(ctx context.Context, raw string, cached *string) (Identity, error) {
	v := g.v
	if len(raw) == 0 || len(raw) > g.maxTokenBytes {
		return Identity{}, fmt.Errorf("%w: size %d", ErrMalformed, len(raw))
	}
	var id Identity
	var err error
	if v.tokens == nil {
		id, err = g.verifyUncached(ctx, raw)
	} else {
		key := g.cacheKey(raw)
		// A token in the in-process tier is not in the negative cache: it
		// goes there only when its verification fails, and one key does
		// not both pass and fail but for the clock, which the expiry check
		// below handles. So the hot path asks the token cache first, and
		// the negative cache only for tokens it lacks.
		hot, ok := v.tokens.GetLocal(key)
		if ok {
			id = hot.unpack()
		} else {
			if reason, neg := g.rejected(ctx, key); neg {
				return Identity{}, errorForReason(reason)
			}
			id, err = g.load(ctx, key, raw, cached)
		}
		if err == nil && !v.now().Before(id.ExpiresAt) {
			// A cached entry can only be this old through clock skew
			// between replicas; verify again, with the issuer's leeway,
			// unless that was done and failed. A miss asked the negative
			// cache above already; an in-process hit did not.
			if ok {
				if reason, neg := g.rejected(ctx, key); neg {
					return Identity{}, errorForReason(reason)
				}
			}
			id, err = g.verifyUncached(ctx, raw)
		}
		if err != nil && v.negative != nil && cacheableFailure(err) {
			v.negative.SetLocal(key, Reason(err), v.negTTL)
		}
	}
	if err != nil {
		return Identity{}, err
	}
	// Revocation is a property of the user, not of the token, so it is
	// checked on every call (against the cached user record).
	if v.revoke != nil && id.Provider == ProviderFirebase {
		if err := v.revoke.check(ctx, id); err != nil {
			return Identity{}, err
		}
	}
	return id, nil
}

// rejected returns the reason key's token failed verification recently,
// from the negative cache.
func (g *Generation) rejected(ctx context.Context, key string) (string, bool) {
	if g.v.negative == nil {
		return "", false
	}
	return g.v.negative.Get(ctx, key)
}

// load answers key, which the token cache's in-process tier lacks, from
// its shared tier, or verifies raw and caches the result. The closures it
// needs are only built here, so that an in-process hit allocates nothing
// for them.
func (g *Generation) load(ctx context.Context, key, raw string, cached *string) (Identity, error) {
	v := g.v
	var also func() []*cache.Prefetch
	if v.prefetch != nil {
		also = func() []*cache.Prefetch {
			if id, ok := g.peek(raw); ok {
				if p := v.prefetch(id); p != nil {
					return []*cache.Prefetch{p}
				}
			}
			return nil
		}
	}
	// The identity verified here is returned as it is; only later
	// callers get it unpacked from the cache.
	var loaded Identity
	p, err := v.tokens.GetOrLoadWith(ctx, key, also, func(ctx context.Context) (packed, time.Duration, error) {
		if cached != nil {
			*cached = "miss"
		}
		id, err := g.verifyUncached(ctx, raw)
		if err != nil {
			return packed{}, 0, err
		}
		loaded = id
		p, ok := pack(id)
		if !ok {
			return p, 0, nil // too long to cache; verified all the same
		}
		return p, min(v.ttl, id.ExpiresAt.Sub(v.now())), nil
	})
	if err != nil {
		return Identity{}, err
	}
	if loaded.Provider != "" {
		return loaded, nil
	}
	return p.unpack(), nil
}

// ForgetUser drops the cached Firebase user record of uid, in Redis and in
// every replica that hears of it (see cache.Redis.Run), so that the next
// request for the user reads the record again from the Admin API and sees a
// revocation or a disabled account at once. Without revocation it does
// nothing.
func (v *Verifier) ForgetUser(ctx context.Context, uid string) error {
	if v.revoke == nil {
		return nil
	}
	return v.revoke.Invalidate(ctx, uid)
}

// ReloadUser reads the Firebase user record of uid from the Admin API and
// shares it: it replaces the cached record in Redis and in this replica, and
// every replica that hears of it (see cache.Redis.Run) drops its in-process
// copy and reads the new one from Redis. A revocation, a disabled account or
// a deletion made through authgate (a logout) is thus refused by every
// replica at once, at the cost of one Admin API call in all. The error wraps
// ErrRevocationUnavailable when the record could not be read; otherwise it
// reports that the record could not be shared (this replica has it). Without
// revocation it does nothing.
func (v *Verifier) ReloadUser(ctx context.Context, uid string) error {
	if v.revoke == nil {
		return nil
	}
	return v.revoke.reload(ctx, uid)
}

// cacheableFailure reports whether err is a property of the token alone, so
// that the same token will fail the same way for a while.
func cacheableFailure(err error) bool {
	if errors.Is(err, errUnknownKid) || errors.Is(err, ErrKeysUnavailable) {
		return false // a key refresh may change the answer
	}
	return errors.Is(err, ErrInvalid) || errors.Is(err, ErrExpired) ||
		errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnknownIssuer)
}

func errorForReason(reason string) error {
	switch reason {
	case "expired":
		return fmt.Errorf("%w (cached)", ErrExpired)
	case "malformed":
		return fmt.Errorf("%w (cached)", ErrMalformed)
	case "unknown_issuer":
		return fmt.Errorf("%w (cached)", ErrUnknownIssuer)
	default:
		return fmt.Errorf("%w (cached)", ErrInvalid)
	}
}

// verifyUncached parses the token, picks its issuer and verifies it.
func (g *Generation) verifyUncached(ctx context.Context, raw string) (Identity, error) {
	v := g.v
	if v.tracer != nil {
		var span trace.Span
		ctx, span = v.tracer.Start(ctx, "verify.verify_uncached")
		defer span.End()
	}
	start := v.now()
	t, err := v.parsed.parse(raw)
	if err != nil {
		v.m.total.WithLabelValues("none", Reason(err)).Inc()
		return Identity{}, err
	}
	// The identity's strings and claims are copies: none is in t's buffer.
	defer v.parsed.put(t)
	for _, is := range g.issuers {
		if !is.owns(t) {
			continue
		}
		id, err := is.verify(ctx, t, start)
		if err == nil {
			// Decoded now, and only the claims kept.
			if v.trimClaims {
				id.Claims = t.claims.pick(g.keepClaims)
			} else {
				id.Claims = t.claims.all()
			}
		}
		v.m.total.WithLabelValues(string(is.provider), Reason(err)).Inc()
		v.m.duration.WithLabelValues(string(is.provider)).Observe(v.now().Sub(start).Seconds())
		return id, err
	}
	v.m.total.WithLabelValues("none", "unknown_issuer").Inc()
	return Identity{}, ErrUnknownIssuer
}

// peek reads the provider and subject of raw without verifying anything,
// for WithUserPrefetch. It decodes only the payload's iss and the issuer's
// subject claim.
func (g *Generation) peek(raw string) (Identity, bool) {
	_, rest, _ := strings.Cut(raw, ".")
	p, _, ok := strings.Cut(rest, ".")
	if !ok {
		return Identity{}, false
	}
	b, err := decodeSegment(p)
	if err != nil {
		return Identity{}, false
	}
	t := &token{}
	if t.claims, err = scanClaims(b, t.members[:0]); err != nil {
		return Identity{}, false
	}
	for _, is := range g.issuers {
		if !is.owns(t) {
			continue
		}
		sub := t.str(is.subjectClaim())
		if sub == "" {
			return Identity{}, false
		}
		id := Identity{Provider: is.provider, Subject: sub}
		if is.provider == ProviderFirebase {
			id.FirebaseUID = sub
		}
		return id, true
	}
	return Identity{}, false
}

// Run fetches the keys of every key set of the generation in use now and
// refreshes each in the background as its max-age runs out, until ctx is
// done; it returns nil then. After Use, it refreshes the new generation's
// key sets: those the new generation kept go on as they were.
func (v *Verifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[*keySet]context.CancelFunc{}
	for {
		keep := map[*keySet]bool{}
		for _, k := range v.gen.Load().keySets {
			keep[k] = true
			if running[k] != nil {
				continue
			}
			kctx, cancel := context.WithCancel(ctx)
			running[k] = cancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				k.run(kctx, sleepCtx)
			}()
		}
		for k, cancel := range running {
			if !keep[k] {
				cancel()
				delete(running, k)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-v.reloaded:
		}
	}
}

// Prefetch fetches every key set of the current generation once, all at
// once (see fetchAll), so that the first requests do not wait for keys.
func (v *Verifier) Prefetch(ctx context.Context) error { return fetchAll(ctx, v.Current().keySets) }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Check reports whether tokens can be verified now: every issuer has usable
// keys (possibly stale, within max_stale). It is the critical readiness
// check.
func (v *Verifier) Check(ctx context.Context) error {
	var errs []error
	for _, k := range v.gen.Load().keySets {
		if err := k.check(); err != nil && !errors.Is(err, errDegraded) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// KeysFresh reports key sets served past their max-age because the key
// endpoint fails: authgate still verifies, but health says degraded.
func (v *Verifier) KeysFresh(ctx context.Context) error {
	var errs []error
	for _, k := range v.gen.Load().keySets {
		if err := k.check(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CacheCheck reports the shared cache tier: nil, or an error when Redis is
// unreachable and only the in-process tier serves.
func (v *Verifier) CacheCheck(ctx context.Context) error {
	if v.tokens == nil {
		return nil
	}
	return v.tokens.Check(ctx)
}

// Close stops the caches' background work.
func (v *Verifier) Close() error {
	var errs []error
	if v.tokens != nil {
		errs = append(errs, v.tokens.Close())
	}
	if v.negative != nil {
		errs = append(errs, v.negative.Close(), v.negLocal.Close())
	}
	if v.users != nil {
		errs = append(errs, v.users.Close())
	}
	return errors.Join(errs...)
}

// verifyMetrics are the verification series.
type verifyMetrics struct {
	total      *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	keyRefresh *prometheus.CounterVec
	keyAge     *prometheus.Desc
	v          *Verifier
}

func newVerifyMetrics(reg prometheus.Registerer, v *Verifier) (*verifyMetrics, error) {
	m := &verifyMetrics{v: v}
	m.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "verify_total",
		Help: "Token verifications (cache misses) by provider and result.",
	}, []string{"provider", "result"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "verify_duration_seconds",
		Help:    "Time spent verifying a token that was not cached, by provider.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1},
	}, []string{"provider"})
	m.keyRefresh = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "key_refresh_total",
		Help: "Key set fetches by key set and result.",
	}, []string{"keyset", "result"})
	m.keyAge = prometheus.NewDesc("key_age_seconds", "Age of the keys in use, by key set.", []string{"keyset"}, nil)
	for _, p := range []Provider{ProviderLegacy, ProviderFirebase} {
		m.duration.WithLabelValues(string(p))
	}
	for _, p := range []Provider{ProviderLegacy, ProviderFirebase, "none"} {
		for _, r := range []string{"ok", "invalid", "expired", "malformed", "unknown_issuer", "keys_unavailable", "error"} {
			m.total.WithLabelValues(string(p), r)
		}
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.total, m.duration, m.keyRefresh, keyAgeCollector{m}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register verify metrics: %w", err)
			}
		}
	}
	return m, nil
}

// keyAgeCollector reports the age of the keys of the generation in use
// when scraped: a key set that a reload removed has no series.
type keyAgeCollector struct{ m *verifyMetrics }

func (c keyAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.keyAge }

func (c keyAgeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, k := range c.m.v.gen.Load().keySets {
		ch <- prometheus.MustNewConstMetric(c.m.keyAge, prometheus.GaugeValue, k.age(), k.name)
	}
}

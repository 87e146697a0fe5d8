package federation

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/verify"
)

// Reasons recorded in last_sync_error.
const reasonUnverifiedEmail = "link refused: token email not verified"

// ensureAttempts bounds the rounds of get-or-create for one identity. Each
// round that loses a race sees the row that won it in the next, so two
// rounds suffice unless rows keep changing underneath.
const ensureAttempts = 4

const (
	sqlInsertFirebase = `INSERT INTO users AS u (firebase_uid, email, username, user_type, federation_status, last_synced_at)
	VALUES ($1, $2, $3, coalesce($4, 'user'), 'active', $5)
	ON CONFLICT DO NOTHING
	RETURNING ` + userColumns

	// Written only when the row's last_login is older than the interval,
	// so that replicas flushing the same user write it once. Like every
	// write of a column, it moves updated_at.
	sqlFlushLogins = `UPDATE users u SET last_login = v.at, updated_at = now()
	FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, at)
	WHERE u.id = v.id AND (u.last_login IS NULL OR u.last_login <= v.at - $3::bigint * interval '1 microsecond')`
)

// EnsureUser returns the row of a verified identity, creating or linking
// it the first time a Firebase user is seen. It is safe for concurrent
// use; concurrent first requests for one user, on any number of replicas,
// leave exactly one row.
//
// A Firebase identity is looked up by its uid. Without a row, a live
// account with the token's email is linked to the uid if the token says
// the email is verified. If it is not verified, the refusal is recorded on
// that account (federation_status failed) and, like an account linked to
// another uid already, the identity gets ErrLinkRefused, or with
// on_email_conflict allow an unlinked User without ID and with status
// failed. Otherwise a row is created (its email only if verified, its
// username the token's name if free).
//
// A legacy identity is looked up by its subject as the user id; without a
// row it gets ErrUnknownUser. A disabled or soft-deleted row gets
// ErrUserDisabled, with the row.
//
// When PostgreSQL is unreachable it returns ErrUnavailable with
// on_unavailable deny, or with allow a User without ID built from the
// token, with status degraded; a Firebase identity is then remembered and
// its row created by Run once PostgreSQL is back.
func (s *Store) EnsureUser(ctx context.Context, id verify.Identity) (User, error) {
	res := resultExisting // unless this call loaded the row itself
	var u User
	var err error
	switch id.Provider {
	case verify.ProviderFirebase:
		if id.FirebaseUID == "" {
			s.m.upsert(resultError)
			return User{}, errors.New("ensure user: firebase identity without uid")
		}
		key, _ := userKey(id)
		u, err = s.lookup(ctx, key, &res, func(ctx context.Context) (User, result, error) {
			return s.ensureFirebase(ctx, id)
		})
	case verify.ProviderLegacy:
		if !validUUID(id.Subject) {
			s.m.upsert(resultUnknown)
			return User{}, fmt.Errorf("ensure user: subject is not a uuid: %w", ErrUnknownUser)
		}
		sub := strings.ToLower(id.Subject)
		key, _ := userKey(id)
		u, err = s.lookup(ctx, key, &res, func(ctx context.Context) (User, result, error) {
			return s.loadLegacy(ctx, sub)
		})
	default:
		s.m.upsert(resultError)
		return User{}, fmt.Errorf("ensure user: unknown provider %q", id.Provider)
	}
	switch {
	case err == nil && u.ID == "": // unlinked by on_email_conflict allow
		if res == resultExisting {
			res = resultLinkRefused
		}
		s.m.upsert(res)
		return u, nil
	case err == nil && u.Disabled():
		s.m.upsert(resultDisabled)
		return u, fmt.Errorf("ensure user: %w", ErrUserDisabled)
	case err == nil:
		s.touch(u)
		s.m.upsert(res)
		return u, nil
	case errors.Is(err, ErrUnavailable) && s.cfg.OnUnavailable == PolicyAllow && ctx.Err() == nil:
		s.m.upsert(resultDegraded)
		if id.Provider == verify.ProviderFirebase {
			s.wait.add(id, s.m)
		}
		return degradedUser(id), nil
	case errors.Is(err, ErrLinkRefused):
		if res == resultExisting {
			res = resultLinkRefused
		}
		s.m.upsert(res)
	case errors.Is(err, ErrUnknownUser):
		s.m.upsert(resultUnknown)
	default:
		s.m.upsert(resultError)
	}
	return User{}, fmt.Errorf("ensure user: %w", err)
}

// userKey is the cache key of the row of id, and false when id cannot have
// one (no uid, a legacy subject that is not a UUID, another provider).
func userKey(id verify.Identity) (string, bool) {
	switch {
	case id.Provider == verify.ProviderFirebase && id.FirebaseUID != "":
		return uidKey(id.FirebaseUID), true
	case id.Provider == verify.ProviderLegacy && validUUID(id.Subject):
		return idKey(strings.ToLower(id.Subject)), true
	}
	return "", false
}

// PrefetchUser is the Redis lookup of id's cached row, for the verifier to
// send in the same round trip as the token's (verify.WithUserPrefetch); nil
// when there is nothing to fetch. id is unverified: it only picks the key.
func (s *Store) PrefetchUser(id verify.Identity) *cache.Prefetch {
	key, ok := userKey(id)
	if !ok || s.users == nil {
		return nil
	}
	return s.users.Prefetch(key)
}

// lookup returns the row cached under key, or loads it. Concurrent misses
// share one load (in this process). res is set by load only in the call
// that ran it. A row without ID is not cached.
func (s *Store) lookup(ctx context.Context, key string, res *result, load func(context.Context) (User, result, error)) (User, error) {
	if s.tracer != nil {
		load = s.traced(load)
	}
	if s.users == nil {
		u, r, err := load(ctx)
		*res = r
		return u, err
	}
	// The row loaded here is returned as it is; only later callers get
	// it unpacked from the cache.
	var loaded User
	didLoad := false
	p, err := s.users.GetOrLoad(ctx, key, func(ctx context.Context) (packedUser, time.Duration, error) {
		u, r, err := load(ctx)
		*res = r
		loaded, didLoad = u, true
		if err != nil {
			return packedUser{}, 0, err
		}
		p, ok := packUser(u)
		if !ok || u.ID == "" {
			return p, 0, nil
		}
		return p, s.cfg.CacheTTL, nil
	})
	if didLoad {
		return loaded, err
	}
	return p.unpack(), err
}

// traced wraps load in a federation.ensure_user span: the database work
// of EnsureUser, which runs on a cache miss only. Its attribute is the
// result from a closed set, never the user id or email.
func (s *Store) traced(load func(context.Context) (User, result, error)) func(context.Context) (User, result, error) {
	return func(ctx context.Context) (User, result, error) {
		ctx, span := s.tracer.Start(ctx, "federation.ensure_user")
		defer span.End()
		u, r, err := load(ctx)
		if err != nil {
			span.SetStatus(codes.Error, "ensure user failed")
		} else if r >= 0 && r < numResults {
			span.SetAttributes(attribute.String("federation.result", resultNames[r]))
		}
		return u, r, err
	}
}

// errSkipped: the breaker kept the request from PostgreSQL.
var errSkipped = fmt.Errorf("%w: skipped after a recent failure", ErrUnavailable)

// guarded runs fn on a pooled connection unless the breaker skips
// PostgreSQL, and reports the outcome to the breaker.
func (s *Store) guarded(ctx context.Context, fn func(ctx context.Context, q querier) error) error {
	if !s.br.Allow(s.now()) {
		return errSkipped
	}
	err := s.withConn(ctx, fn)
	s.report(ctx, err)
	return err
}

// loadLegacy is the database part of EnsureUser for a legacy identity. The
// legacy service creates a row when it registers a user, so a token
// without one is refused, not given a row.
func (s *Store) loadLegacy(ctx context.Context, id string) (User, result, error) {
	var u User
	err := s.guarded(ctx, func(ctx context.Context, q querier) error {
		var err error
		u, err = scanUser(q.QueryRow(ctx, sqlFindByID, id))
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return User{}, resultUnknown, ErrUnknownUser
	case errors.Is(err, errSkipped):
		s.m.skipped.Inc()
	}
	return u, resultExisting, err
}

// ensureFirebase is the database part of EnsureUser for a Firebase
// identity.
func (s *Store) ensureFirebase(ctx context.Context, id verify.Identity) (User, result, error) {
	var u User
	res := resultError
	err := s.guarded(ctx, func(ctx context.Context, q querier) error {
		var err error
		u, res, err = s.getOrCreate(ctx, q, id)
		return err
	})
	if errors.Is(err, errSkipped) {
		s.m.skipped.Inc()
	}
	return u, res, err
}

// getOrCreate finds, links or creates the row of a Firebase identity, in
// rounds: a round that loses a race to another request (the uid, the
// email or the username was taken meanwhile) learns why in the next.
func (s *Store) getOrCreate(ctx context.Context, q querier, id verify.Identity) (User, result, error) {
	uid := id.FirebaseUID
	username := id.Name
	for range ensureAttempts {
		u, err := scanUser(q.QueryRow(ctx, sqlFindByFirebaseUID, uid))
		if err == nil {
			return u, resultExisting, nil
		}
		if err = translate(ctx, err); !errors.Is(err, ErrNotFound) {
			return User{}, resultError, err
		}
		if id.Email != "" {
			owner, err := scanUser(q.QueryRow(ctx, sqlFindByEmail, id.Email))
			if err == nil {
				u, res, err := s.linkOrRefuse(ctx, q, owner, id)
				if errors.Is(err, errLostRace) {
					continue
				}
				return u, res, err
			}
			if err = translate(ctx, err); !errors.Is(err, ErrNotFound) {
				return User{}, resultError, err
			}
		}
		// An unverified email is not stored: it would claim the address
		// (unique among live rows) for someone who may not own it.
		var email string
		if id.EmailVerified {
			email = id.Email
		}
		u, err = scanUser(q.QueryRow(ctx, sqlInsertFirebase, uid, nullable(email), nullable(username), nullable(id.Role), s.now()))
		if err == nil {
			return u, resultCreated, nil
		}
		if err = translate(ctx, err); !errors.Is(err, ErrNotFound) {
			return User{}, resultError, err
		}
		// A unique rule stopped the insert. If it was the uid or the email,
		// the next round finds the row; if the username, it goes without.
		username = ""
	}
	return User{}, resultError, fmt.Errorf("get or create firebase user: rows kept changing for %d rounds", ensureAttempts)
}

// errLostRace: the account changed between reading and linking it.
var errLostRace = errors.New("lost a race")

// linkOrRefuse handles a Firebase identity without a row whose email
// belongs to the live account owner.
func (s *Store) linkOrRefuse(ctx context.Context, q querier, owner User, id verify.Identity) (User, result, error) {
	switch {
	case owner.FirebaseUID == id.FirebaseUID: // linked meanwhile
		return owner, resultExisting, nil
	case owner.FirebaseUID != "":
		// Never hand over an account linked to someone else. Nothing is
		// recorded on it: it is in order.
		s.log.Warn("email belongs to an account linked to another firebase user",
			zap.String("user_id", owner.ID), zap.String("provider", string(id.Provider)))
		return s.refuse(id, resultConflict, fmt.Errorf("%w: %w: account linked to another firebase uid", ErrLinkRefused, ErrConflict))
	case !id.EmailVerified:
		u, err := scanUser(q.QueryRow(ctx, sqlMarkFailed, owner.ID, reasonUnverifiedEmail, s.now()))
		if err != nil {
			return User{}, resultError, translate(ctx, err)
		}
		s.invalidate(ctx, keysOf(u)...)
		s.log.Warn("link refused: token email not verified", zap.String("user_id", owner.ID))
		return s.refuse(id, resultLinkRefused, fmt.Errorf("%w: token email not verified", ErrLinkRefused))
	}
	u, err := scanUser(q.QueryRow(ctx, sqlLinkUnlinked, owner.ID, id.FirebaseUID, s.now()))
	if err != nil {
		// No row: the account was linked or deleted meanwhile. A conflict:
		// the uid got a row meanwhile. The next round sees which.
		if err = translate(ctx, err); errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
			return User{}, resultError, errLostRace
		}
		return User{}, resultError, err
	}
	// The uid key held nothing: the uid had no row.
	s.invalidate(ctx, idKey(u.ID))
	return u, resultLinked, nil
}

// refuse applies on_email_conflict to a refused link.
func (s *Store) refuse(id verify.Identity, res result, err error) (User, result, error) {
	if s.cfg.OnEmailConflict == PolicyDeny {
		return User{}, res, err
	}
	return User{FirebaseUID: id.FirebaseUID, Email: id.Email, IsActive: true, FederationStatus: StatusFailed}, res, nil
}

// degradedUser is the identity served from its token while PostgreSQL is
// unreachable.
func degradedUser(id verify.Identity) User {
	return User{FirebaseUID: id.FirebaseUID, Email: id.Email, UserType: id.Role, IsActive: true, FederationStatus: StatusDegraded}
}

// loginTracker schedules last_login writes: at most one per user per
// interval from this replica, and the flush statement skips rows another
// replica wrote within the interval.
type loginTracker struct {
	// The shards remember when this replica last scheduled the write of
	// a user, for up to max users: read on a request whose cached row's
	// last_login is older than the interval, written once per interval
	// per user, and pruned at each flush. A user is known by a 64-bit hash
	// of its id, so that they hold no pointers, 16 bytes a user and spare
	// room; two users of one hash (about n²/2⁶⁵ for n users) share an
	// entry, and the second's write is skipped for one interval.
	seed   maphash.Seed
	shards [loginShards]paddedShard
	size   atomic.Int64 // users remembered over all shards, at most max
	max    int64

	mu    sync.Mutex
	dirty map[string]int64 // user id → login time to write, in Unix ns
}

// loginShards spreads the users over locks of their own, so that new
// users rarely wait for one another.
const loginShards = 64

// A loginShard is an open-addressing hash table that requests read
// without a lock, as they read a sync.Map: writers hold mu, fill a slot's
// time before its key, and publish a new table to grow or prune it.
type loginShard struct {
	mu  sync.Mutex
	tab atomic.Pointer[loginTable]
	n   int // slots in use; under mu
}

// paddedShard gives a shard a cache line of its own, so that writers of
// one do not slow down readers of its neighbours.
type paddedShard struct {
	loginShard
	_ [64 - unsafe.Sizeof(loginShard{})%64]byte
}

// loginTable has a power of two of slots, at least minLoginSlots and at
// most 3/4 of them used, so that a probe always ends at an empty slot.
type loginTable []loginSlot

const minLoginSlots = 8

type loginSlot struct {
	key atomic.Uint64 // hash of a user id; 0 marks an empty slot
	at  atomic.Int64  // Unix ns of the user's scheduled write
}

// slot returns the slot of h, or the empty slot where it would go. The
// low bits of h chose the shard; the probe starts from the next ones.
func (tab loginTable) slot(h uint64) (*loginSlot, bool) {
	mask := uint64(len(tab) - 1)
	for i := (h / loginShards) & mask; ; i = (i + 1) & mask {
		if k := tab[i].key.Load(); k == h || k == 0 {
			return &tab[i], k == h
		}
	}
}

// init readies t to remember up to n users.
func (t *loginTracker) init(n int) {
	t.seed = maphash.MakeSeed()
	t.max = int64(n)
	for i := range t.shards {
		t.shards[i].rebuild(minLoginSlots, nil)
	}
	t.dirty = make(map[string]int64)
}

// due reports whether the write of id's login at now is due: none was
// scheduled within interval (both in ns). It then remembers now for id,
// unless max users are remembered already: such a user's writes are
// scheduled at each request, the dirty map keeping one per user, until
// the flushes make room.
func (t *loginTracker) due(id string, now, interval int64) bool {
	h := maphash.String(t.seed, id)
	if h == 0 {
		h = 1
	}
	sh := &t.shards[h%loginShards].loginShard
	if s, ok := sh.tab.Load().slot(h); ok && now-s.at.Load() < interval {
		return false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tab := *sh.tab.Load()
	s, ok := tab.slot(h)
	switch {
	case ok && now-s.at.Load() < interval: // scheduled meanwhile
		return false
	case ok:
		s.at.Store(now)
		return true
	case t.size.Add(1) > t.max:
		t.size.Add(-1)
		return true
	}
	if 4*(sh.n+1) > 3*len(tab) {
		tab = sh.rebuild(2*len(tab), nil)
		s, _ = tab.slot(h)
	}
	s.at.Store(now) // before the key: a reader that finds the key finds its time
	s.key.Store(h)
	sh.n++
	return true
}

// rebuild replaces sh's table by one of size slots holding the entries
// keep accepts (nil: all), and returns it. sh.mu must be held, unless sh
// is not in use yet.
func (sh *loginShard) rebuild(size int, keep func(at int64) bool) loginTable {
	tab := make(loginTable, size)
	n := 0
	if old := sh.tab.Load(); old != nil {
		for i := range *old {
			h, at := (*old)[i].key.Load(), (*old)[i].at.Load()
			if h == 0 || keep != nil && !keep(at) {
				continue
			}
			s, _ := tab.slot(h)
			s.at.Store(at)
			s.key.Store(h)
			n++
		}
	}
	sh.n = n
	sh.tab.Store(&tab)
	return tab
}

// forget drops the users whose write was scheduled interval (in ns) or
// longer before now, in tables shrunk to fit the rest.
func (t *loginTracker) forget(now, interval int64) {
	keep := func(at int64) bool { return now-at < interval }
	for i := range t.shards {
		sh := &t.shards[i].loginShard
		sh.mu.Lock()
		tab, live := *sh.tab.Load(), 0
		for j := range tab {
			if tab[j].key.Load() != 0 && keep(tab[j].at.Load()) {
				live++
			}
		}
		if live < sh.n {
			t.size.Add(int64(live - sh.n))
			sh.rebuild(max(minLoginSlots, 1<<bits.Len(uint(2*live))), keep)
		}
		sh.mu.Unlock()
	}
}

// len returns the number of users remembered.
func (t *loginTracker) len() int { return int(t.size.Load()) }

// touch schedules a last_login write for u unless one was written or
// scheduled within the interval.
func (s *Store) touch(u User) {
	interval := s.cfg.LastLoginInterval
	if interval < 0 {
		return
	}
	now := s.now()
	if now.Sub(u.LastLogin) < interval {
		return
	}
	at := now.UnixNano()
	if !s.logins.due(u.ID, at, interval.Nanoseconds()) {
		return
	}
	s.logins.mu.Lock()
	s.keepLogin(u.ID, at)
	s.logins.mu.Unlock()
}

// flushChunk is the most rows one last_login statement writes: a backlog
// built up during an outage goes out as many short statements, each well
// inside query_timeout, rather than one that grows with every failure.
const flushChunk = 1000

// flushLogins writes the scheduled last_login values in one statement, and
// forgets schedules older than the interval. A failed batch is kept for
// the next flush.
func (s *Store) flushLogins(ctx context.Context) {
	s.logins.forget(s.now().UnixNano(), s.cfg.LastLoginInterval.Nanoseconds())
	s.logins.mu.Lock()
	batch := s.logins.dirty
	s.logins.dirty = make(map[string]int64)
	s.logins.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if s.br.Open() {
		// Not worth an acquire timeout: requests or Check will find out
		// when PostgreSQL is back.
		s.logins.mu.Lock()
		s.keepLogins(batch)
		s.logins.mu.Unlock()
		return
	}
	// Sorted, so that replicas flushing overlapping batches lock rows in
	// the same order.
	ids := make([]string, 0, len(batch))
	for id := range batch {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ats := make([]time.Time, 0, min(len(ids), flushChunk))
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), flushChunk)]
		ats = ats[:0]
		for _, id := range chunk {
			ats = append(ats, time.Unix(0, batch[id]))
		}
		var n int64
		err := s.withConn(ctx, func(ctx context.Context, q querier) error {
			tag, err := q.Exec(ctx, sqlFlushLogins, chunk, ats, s.cfg.LastLoginInterval.Microseconds())
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			// This chunk and the rest wait for the next flush.
			s.logins.mu.Lock()
			for _, id := range ids {
				s.keepLogin(id, batch[id])
			}
			s.logins.mu.Unlock()
			s.log.Warn("last_login not written, retrying later", zap.Int("users", len(ids)), zap.Error(err))
			return
		}
		s.m.lastLoginWrites.Add(float64(n))
		ids = ids[len(chunk):]
	}
}

// keepLogins puts an unwritten batch back, behind any later login.
// s.logins.mu must be held.
func (s *Store) keepLogins(batch map[string]int64) {
	for id, at := range batch {
		s.keepLogin(id, at)
	}
}

// keepLogin schedules a last_login write of at (Unix ns) for id, unless a
// later one is scheduled, and drops it when last_login_max are waiting
// already. s.logins.mu must be held.
func (s *Store) keepLogin(id string, at int64) {
	cur, ok := s.logins.dirty[id]
	switch {
	case ok && cur >= at:
	case !ok && len(s.logins.dirty) >= s.cfg.LastLoginMax:
		s.m.loginsDropped.Inc()
	default:
		s.logins.dirty[id] = at
	}
}

// pendingSet remembers Firebase identities served while PostgreSQL was
// unreachable, keyed by uid, up to max.
type pendingSet struct {
	max int
	mu  sync.Mutex
	m   map[string]verify.Identity
}

// add remembers id, without its claims.
func (p *pendingSet) add(id verify.Identity, m *metrics) {
	slim := verify.Identity{
		Provider: id.Provider, Subject: id.Subject, FirebaseUID: id.FirebaseUID,
		Email: id.Email, EmailVerified: id.EmailVerified, Name: id.Name, Role: id.Role,
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[id.FirebaseUID]; !ok && len(p.m) >= p.max {
		m.pendingDropped.Inc()
		return
	}
	p.m[id.FirebaseUID] = slim
}

// len returns the number of identities remembered.
func (p *pendingSet) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// retryPending creates the rows of the remembered identities, by the rules
// of EnsureUser, until PostgreSQL fails again.
func (s *Store) retryPending(ctx context.Context) {
	s.wait.mu.Lock()
	ids := make([]verify.Identity, 0, len(s.wait.m))
	for _, id := range s.wait.m {
		ids = append(ids, id)
	}
	s.wait.mu.Unlock()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		var res result
		err := s.guarded(ctx, func(ctx context.Context, q querier) error {
			var err error
			_, res, err = s.getOrCreate(ctx, q, id)
			return err
		})
		if errors.Is(err, ErrUnavailable) {
			return // still or again unavailable; the rest wait
		}
		s.wait.mu.Lock()
		delete(s.wait.m, id.FirebaseUID)
		s.wait.mu.Unlock()
		switch {
		case err == nil || errors.Is(err, ErrLinkRefused):
			s.m.upsert(res)
		default:
			s.m.upsert(resultError)
			s.log.Warn("user row for an identity served during an outage not created", zap.Error(err))
		}
	}
}

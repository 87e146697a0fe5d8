package cache

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Local is an in-process tier: one bounded store that the in-process tiers
// of several caches share (see WithLocal), so that one byte budget
// (Config.LocalMaxBytes) bounds them all. Which entries stay is decided
// across the caches, by how recently and how often each was used (otter's
// W-TinyLFU), not by a fixed share per cache: a process whose user rows
// are few and tokens many spends the budget on tokens.
//
// An entry's weight is an estimate of the heap it holds: the store's node
// and hash-table slot, the key's bytes, and the value with what its
// strings, slices and maps point to (pointers are taken to be shared and
// are not followed). A Local is safe for concurrent use.
type Local struct {
	store *otter.Cache[uint64, localValue]
	// arena is the second level, of encoded entries outside the Go heap,
	// for the caches that give a Binary codec; nil for a Local bounded by
	// entries.
	arena *arena
	now   func() time.Time // the clock of both levels' expiry
	seed  maphash.Seed
	// maxBytes is the budget; 0 for a Local bounded by entries.
	maxBytes int64
	mu       sync.Mutex // serialises registrations
	spaces   atomic.Pointer[[]*space]
}

// The store is keyed by a 64-bit hash of a cache's space and key, which
// otter hashes as an integer, rather than by the pair: hashing a struct
// that holds a string goes through the generic path and made a hit 60 %
// slower. Two keys may share a hash, so an entry keeps its space and key,
// and a lookup that finds another's is a miss; the Set of one replaces
// the other, which is only an eviction.

// localValue is what the store holds: a *item[V] of the cache's V.
type localValue interface {
	weight() uint32
	lifetime() time.Duration
	owner() uint32 // the space
}

// space is one cache's part of a Local, for its metrics.
type space struct {
	n         atomic.Int64       // estimated bytes of its entries, in both levels
	bytes     prometheus.Gauge   // n, exported
	evictions prometheus.Counter // entries evicted for the bound
	// tiered is set when the cache keeps its entries in the arena too:
	// one that leaves the hot level is then not gone, and not evicted.
	// Set before register publishes the space.
	tiered bool
	// gen is the generation of the space's arena entries: clear starts
	// a new one, and entries of older ones are neither found nor counted.
	gen atomic.Uint32
	// arenaN is the part of n in the arena, which clear takes off.
	arenaN atomic.Int64
}

func (sp *space) add(w int64) {
	sp.n.Add(w)
	sp.bytes.Add(float64(w))
}

// item is an in-process entry. ttl is read by the expiry calculator when
// the entry is written, w by the weigher.
type item[V any] struct {
	v     V
	key   string
	ttl   time.Duration
	w     uint32
	space uint32
}

func (it *item[V]) weight() uint32          { return it.w }
func (it *item[V]) lifetime() time.Duration { return it.ttl }
func (it *item[V]) owner() uint32           { return it.space }

// Bounds of Config.LocalMaxBytes: below the minimum it is surely a unit
// mistake (MiB written as bytes).
const (
	minLocalMaxBytes = 1 << 20
	maxLocalMaxBytes = 1 << 40
)

// hotShare is the part of a Local's budget for its hot level, of Go
// objects that a hit returns as they are; the rest is the arena's, of
// encoded entries that a hit decodes and moves to the hot level. An
// eighth holds the working set of a busy replica (about 10 000 users in
// the default 64 MiB) while most users cost their encoded bytes only.
const hotShare = 8

// NewLocal builds an in-process tier that holds at most maxBytes of
// entries, as estimated (see Local): a hot level of Go values with an
// eighth of it, and an arena of encoded entries outside the Go heap with
// the rest, for the caches that give a Binary codec (WithBinary). log may
// be nil. Options: WithClock drives expiry.
func NewLocal(maxBytes int64, log *zap.Logger, opts ...Option) (*Local, error) {
	if maxBytes < minLocalMaxBytes || maxBytes > maxLocalMaxBytes {
		return nil, fmt.Errorf("local_max_bytes: %d is outside %d..%d", maxBytes, minLocalMaxBytes, maxLocalMaxBytes)
	}
	l := &Local{maxBytes: maxBytes}
	rings, index := arenaSizes(maxBytes)
	a, err := newArena(int(rings), int(index), l.arenaDropped)
	if err != nil {
		return nil, err
	}
	l.arena = a
	return l, l.build(&otter.Options[uint64, localValue]{
		MaximumWeight: uint64(maxBytes / hotShare),
		Weigher:       func(_ uint64, v localValue) uint32 { return v.weight() },
	}, log, opts)
}

// arenaSizes splits the arena's share of a budget of maxBytes between its
// rings and their indexes.
func arenaSizes(maxBytes int64) (rings, index int64) {
	share := maxBytes - maxBytes/hotShare
	rings = int64(float64(share)*arenaRingShare) / arenaShards * arenaShards
	return rings, share - rings
}

// OffHeapBytes is the part of a Local of maxBytes (see NewLocal) outside
// the Go heap, in the arena's rings: memory that the Go runtime's memory
// limit does not see, and a container's memory limit does.
func OffHeapBytes(maxBytes int64) int64 {
	rings, _ := arenaSizes(maxBytes)
	return rings
}

// NewLocalCount builds an in-process tier that holds at most maxEntries
// entries, whatever their size: for a cache that must not compete with
// the others for the byte budget, such as verify's cache of rejected
// tokens, which a flood of junk would otherwise turn into evictions of
// valid ones.
func NewLocalCount(maxEntries int, log *zap.Logger, opts ...Option) (*Local, error) {
	if maxEntries < 1 {
		return nil, fmt.Errorf("in-process tier: %d entries: must be positive", maxEntries)
	}
	l := &Local{}
	return l, l.build(&otter.Options[uint64, localValue]{MaximumSize: maxEntries}, log, opts)
}

func (l *Local) build(lo *otter.Options[uint64, localValue], log *zap.Logger, opts []Option) error {
	o := newOptions(opts)
	l.now = o.now
	l.seed = maphash.MakeSeed()
	lo.ExpiryCalculator = otter.ExpiryWritingFunc(func(e otter.Entry[uint64, localValue]) time.Duration {
		return e.Value.lifetime()
	})
	// Atomic: under the store's lock, so that the counts never lag behind
	// the store and no goroutine is started per eviction.
	lo.OnAtomicDeletion = l.deleted
	lo.Logger = otterLogger{orNop(log).Named("cache")}
	if o.custom {
		lo.Clock = otterClock(o.now)
	}
	store, err := otter.New(lo)
	if err != nil {
		return fmt.Errorf("in-process tier: %w", err)
	}
	l.store = store
	empty := []*space{}
	l.spaces.Store(&empty)
	return nil
}

// register adds a cache's space, whose entries are counted in bytes and
// evictions. Two caches may register under one name (a verifier rebuilt
// while the old one drains): they get different spaces.
func (l *Local) register(sp *space) uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.spaces.Load()
	next := make([]*space, len(old), len(old)+1)
	copy(next, old)
	next = append(next, sp)
	l.spaces.Store(&next)
	return uint32(len(old))
}

// deleted counts an entry that left the store: removed, replaced, expired
// or evicted.
func (l *Local) deleted(e otter.DeletionEvent[uint64, localValue]) {
	sp := (*l.spaces.Load())[e.Value.owner()]
	sp.add(-int64(e.Value.weight()))
	if e.Cause == otter.CauseOverflow && !sp.tiered {
		sp.evictions.Inc()
	}
}

// arenaDropped counts an entry that left the arena: replaced, removed,
// expired or, when evicted, dropped for room. Entries of a generation
// that clear ended were taken off already.
func (l *Local) arenaDropped(space, gen uint32, size int, evicted bool) {
	sp := (*l.spaces.Load())[space]
	if sp.gen.Load() != gen {
		return
	}
	w := arenaWeight(size)
	sp.arenaN.Add(-w)
	sp.add(-w)
	if evicted {
		sp.evictions.Inc()
	}
}

// arenaWeight is what an arena entry of size bytes counts against the
// budget: its bytes in the ring and its index slot.
func arenaWeight(size int) int64 { return int64(size + arenaIndexBytes) }

// setArena writes val, the encoded value of key in space, to the arena
// for ttl. It reports false when there is no arena or the entry does not
// fit one.
func (l *Local) setArena(space uint32, key string, ttl time.Duration, val []byte) bool {
	if l.arena == nil {
		return false
	}
	expiry := l.now().Add(ttl).UnixNano()
	sp := (*l.spaces.Load())[space]
	gen := sp.gen.Load()
	if !l.arena.set(l.hash(space, key), space, gen, expiry, key, val) {
		return false
	}
	w := arenaWeight(entryHdr + len(key) + len(val))
	sp.arenaN.Add(w)
	sp.add(w)
	return true
}

// getArena calls read with the encoded value of key in space and the
// time it has left, if the arena holds it unexpired, and reports whether
// it did and read accepted it. read runs under a lock of the arena and
// must not call the arena (the hot level it may: Cache.getArena moves the
// value there).
func (l *Local) getArena(space uint32, key string, read func(val []byte, ttl time.Duration) bool) bool {
	if l.arena == nil {
		return false
	}
	genp := &(*l.spaces.Load())[space].gen
	now := l.now().UnixNano()
	return l.arena.get(l.hash(space, key), space, genp, now, key, func(val []byte, expiry int64) bool {
		return read(val, time.Duration(expiry-now))
	})
}

// hash is the store's key for key in space.
func (l *Local) hash(space uint32, key string) uint64 {
	return maphash.String(l.seed, key) ^ uint64(space)*0x9e3779b97f4a7c15
}

func (l *Local) set(space uint32, key string, v localValue) {
	(*l.spaces.Load())[space].add(int64(v.weight()))
	l.store.Set(l.hash(space, key), v)
}

// get returns what the store holds for key in space, or false.
func (l *Local) get(space uint32, key string) (localValue, bool) {
	return l.store.GetIfPresent(l.hash(space, key))
}

// invalidate drops key of space from both levels, the arena first (see
// Cache.getArena), and from the hot level any other key that shares its
// hash.
func (l *Local) invalidate(space uint32, key string) {
	l.removeArena(space, key)
	l.store.Invalidate(l.hash(space, key))
}

// removeArena drops key of space from the arena, if it is there.
func (l *Local) removeArena(space uint32, key string) {
	if l.arena != nil {
		l.arena.remove(l.hash(space, key), space, (*l.spaces.Load())[space].gen.Load(), key)
	}
}

// clear drops every entry of space: from the arena by starting a new
// generation, whose lookups do not find the older entries (they leave as
// room is needed), then, once the lookups that read the old generation
// are done (barrier), from the hot level one by one.
func (l *Local) clear(space uint32) {
	sp := (*l.spaces.Load())[space]
	sp.gen.Add(1)
	sp.add(-sp.arenaN.Swap(0))
	if l.arena != nil {
		l.arena.barrier()
	}
	for h, v := range l.store.All() {
		if v.owner() == space {
			l.store.Invalidate(h)
		}
	}
}

// Bytes returns the estimated bytes of the entries held now.
func (l *Local) Bytes() int64 {
	var n int64
	for _, sp := range *l.spaces.Load() {
		n += sp.n.Load()
	}
	return n
}

// MaxBytes returns the byte budget, or 0 for a Local bounded by entries.
func (l *Local) MaxBytes() int64 { return l.maxBytes }

// CleanUp performs pending evictions and expiries now, rather than on the
// next writes or tick. Tests and benchmarks use it to read a settled
// size.
func (l *Local) CleanUp() { l.store.CleanUp() }

// Close stops the store's periodic clean-up goroutine. The Local keeps
// working; expired entries are then removed by later writes.
func (l *Local) Close() error {
	l.store.StopAllGoroutines()
	return nil
}

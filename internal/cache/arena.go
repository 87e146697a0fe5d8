package cache

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
)

// arena is the in-process tier's second level: encoded entries in rings of
// bytes outside the Go heap (see mmapBytes), which the collector neither
// scans nor counts, so that a full tier costs its entries' bytes and not
// twice them, as garbage lets a heap grow, nor the pointers, headers and
// size-class rounding of a Go object per entry.
//
// The rings are sharded by key hash, each with its own lock. An entry is
// written at its ring's head; room is made by dropping the oldest entries
// (first in, first out: what is used often stays in the hot level in
// front, which promotes from here). A shard's index maps 32 bits of a
// key's hash (the others chose the shard) to the entry's offset; the entry
// keeps its key, which a lookup compares, so that two keys sharing those
// bits are a miss and a replacement, never one answered for the other.
// The index is a Go map without pointers: it is on the heap, but the
// collector does not scan it; its slot of two uint32 takes half the bytes
// of a uint64 key's.
type arena struct {
	shards []arenaShard
	mem    []byte // every shard's ring, from mmapBytes
	// dropped is told of each entry that leaves a ring while live: the
	// space, generation and bytes, and whether it was evicted for room
	// (false: replaced or removed).
	dropped func(space, gen uint32, size int, evicted bool)
}

// arenaShards spreads the entries over locks and rings of their own.
const arenaShards = 64

// An entry's header: its index key (see indexKey), the expiry (Unix ns),
// the space and its generation, and the lengths of the key and the value
// that follow.
const (
	offIndexKey = 0
	offExpiry   = 4
	offSpace    = 12
	offGen      = 16
	offKeyLen   = 20
	offValLen   = 22
	entryHdr    = 24
)

// arenaIndexBytes is what an entry's index slot is reckoned to cost: the
// map's key and offset, its control byte and its spare room. Measured: a
// map[uint32]uint32 of 500 to 4 000 entries holds 12 to 19 bytes an entry
// on the heap, depending on where it stands between two growths (a
// map[uint64]uint32, as the index was, 23 to 37).
const arenaIndexBytes = 20

type arenaShard struct {
	mu sync.Mutex
	// ring holds entries back to back. Without wrapped, they are in
	// [tail, head); with it, in [tail, end) and then [0, head).
	ring            []byte
	head, tail, end int
	wrapped         bool
	index           map[uint32]uint32
	maxIndexed      int // entries the index may hold
	touched         int // the ring's bytes ever written to
	_               [64]byte
}

// arenaRingShare is the part of an arena's bytes for its rings; the rest
// is for their indexes, on the heap: an entry of some 180 bytes takes
// arenaIndexBytes more in its index, and smaller ones are fewer than the
// ring would hold.
const arenaRingShare = 0.9

// newArena maps rings bytes for the rings, and keeps their indexes to
// index bytes (arenaIndexBytes an entry). dropped may be nil.
func newArena(rings, index int, dropped func(space, gen uint32, size int, evicted bool)) (*arena, error) {
	per := rings / arenaShards
	maxIndexed := index / arenaShards / arenaIndexBytes
	mem, err := mmapBytes(per * arenaShards)
	if err != nil {
		return nil, err
	}
	a := &arena{shards: make([]arenaShard, arenaShards), mem: mem, dropped: dropped}
	for i := range a.shards {
		a.shards[i].ring = mem[i*per : (i+1)*per : (i+1)*per]
		a.shards[i].index = make(map[uint32]uint32)
		a.shards[i].maxIndexed = maxIndexed
	}
	// The rings are unmapped when the arena can no longer be reached.
	// Its methods keep it alive until they are done with the rings, which
	// they reach through a shard, not through a.
	runtime.AddCleanup(a, func(m []byte) { munmapBytes(m) }, mem)
	return a, nil
}

// maxEntry is the largest entry a shard takes: a quarter of its ring, so
// that one write never empties it.
func (a *arena) maxEntry() int { return len(a.shards[0].ring) / 4 }

func (a *arena) shard(h uint64) *arenaShard { return &a.shards[h%arenaShards] }

// indexKey is the key of hash h in its shard's index: the bits that did
// not choose the shard.
func indexKey(h uint64) uint32 { return uint32(h >> 32) }

// set writes key's value under hash h for space (generation gen) until
// expiry (Unix ns), replacing any entry of h. It reports false when the
// entry is too large for the arena.
func (a *arena) set(h uint64, space, gen uint32, expiry int64, key string, val []byte) bool {
	size := entryHdr + len(key) + len(val)
	if size > a.maxEntry() || len(key) > 0xffff || len(val) > 0xffff {
		return false
	}
	s, ik := a.shard(h), indexKey(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer runtime.KeepAlive(a) // the rings are a's: see newArena
	if off, ok := s.index[ik]; ok {
		delete(s.index, ik)
		a.drop(s.ring[off:], false)
	}
	off := s.room(a, size)
	e := s.ring[off : off+size]
	binary.LittleEndian.PutUint32(e[offIndexKey:], ik)
	binary.LittleEndian.PutUint64(e[offExpiry:], uint64(expiry))
	binary.LittleEndian.PutUint32(e[offSpace:], space)
	binary.LittleEndian.PutUint32(e[offGen:], gen)
	binary.LittleEndian.PutUint16(e[offKeyLen:], uint16(len(key)))
	binary.LittleEndian.PutUint16(e[offValLen:], uint16(len(val)))
	copy(e[entryHdr:], key)
	copy(e[entryHdr+len(key):], val)
	s.index[ik] = uint32(off)
	s.touched = max(s.touched, off+size)
	return true
}

// room returns the offset of size free bytes at the head, dropping the
// oldest entries to make them, and to keep the index within maxIndexed,
// so that many small entries cost no more than a few large ones. s.mu
// must be held.
func (s *arenaShard) room(a *arena, size int) int {
	for {
		var fits bool
		if !s.wrapped {
			if s.head+size > len(s.ring) {
				s.end, s.head, s.wrapped = s.head, 0, true
				continue
			}
			fits = true
		} else {
			fits = s.head+size <= s.tail
		}
		if fits && len(s.index) < s.maxIndexed {
			break
		}
		if s.wrapped && s.tail >= s.end {
			s.tail, s.wrapped = 0, false
			continue
		}
		if !s.wrapped && s.tail >= s.head {
			break // empty: size fits, being at most a quarter of the ring
		}
		e := s.ring[s.tail:]
		ik := binary.LittleEndian.Uint32(e[offIndexKey:])
		if off, ok := s.index[ik]; ok && off == uint32(s.tail) {
			delete(s.index, ik)
			a.drop(e, true)
		}
		s.tail += entrySize(e)
	}
	off := s.head
	s.head += size
	return off
}

// drop tells a.dropped of the entry e, which left its ring's index.
func (a *arena) drop(e []byte, evicted bool) {
	if a.dropped != nil {
		a.dropped(binary.LittleEndian.Uint32(e[offSpace:]), binary.LittleEndian.Uint32(e[offGen:]), entrySize(e), evicted)
	}
}

func entrySize(e []byte) int {
	return entryHdr + int(binary.LittleEndian.Uint16(e[offKeyLen:])) + int(binary.LittleEndian.Uint16(e[offValLen:]))
}

// get calls read with the value of key in space (generation gen) under
// hash h and its expiry, when it is there and not expired at now (Unix
// ns), and reports whether it was. genp is the space's generation. The
// value is only valid during read, which runs under the shard's lock and
// must not call the arena; what read does there is ordered with the
// writes and removals of the entry.
func (a *arena) get(h uint64, space uint32, genp *atomic.Uint32, now int64, key string, read func(val []byte, expiry int64) bool) bool {
	s := a.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer runtime.KeepAlive(a) // the rings are a's: see newArena
	// Under the lock, so that a clear, which starts a new generation and
	// then waits for each shard's lock (barrier), is not undone by a
	// lookup that read the old generation before it.
	e, ok := s.find(h, space, genp.Load(), key)
	if !ok {
		return false
	}
	expiry := int64(binary.LittleEndian.Uint64(e[offExpiry:]))
	if now >= expiry {
		delete(s.index, indexKey(h))
		a.drop(e, false)
		return false
	}
	kl, vl := len(key), int(binary.LittleEndian.Uint16(e[offValLen:]))
	return read(e[entryHdr+kl:entryHdr+kl+vl], expiry)
}

// find returns the entry indexed under h if it is key's in space and
// generation gen. s.mu must be held.
func (s *arenaShard) find(h uint64, space, gen uint32, key string) ([]byte, bool) {
	off, ok := s.index[indexKey(h)]
	if !ok {
		return nil, false
	}
	e := s.ring[off:]
	kl := int(binary.LittleEndian.Uint16(e[offKeyLen:]))
	if binary.LittleEndian.Uint32(e[offSpace:]) != space || binary.LittleEndian.Uint32(e[offGen:]) != gen ||
		kl != len(key) || string(e[entryHdr:entryHdr+kl]) != key {
		return nil, false
	}
	return e, true
}

// remove drops the entry of key in space under hash h, if it is there.
func (a *arena) remove(h uint64, space, gen uint32, key string) {
	s := a.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer runtime.KeepAlive(a) // the rings are a's: see newArena
	if e, ok := s.find(h, space, gen, key); ok {
		delete(s.index, indexKey(h))
		a.drop(e, false)
	}
}

// barrier waits for every lookup holding a shard's lock.
func (a *arena) barrier() {
	for i := range a.shards {
		a.shards[i].mu.Lock()
		a.shards[i].mu.Unlock()
	}
}

// stats returns the entries indexed, and the ring bytes ever written to
// (the resident part of the mapping).
func (a *arena) stats() (entries, touched int) {
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.Lock()
		entries += len(s.index)
		touched += s.touched
		s.mu.Unlock()
	}
	return entries, touched
}

package cache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// CounterBatch is a set of counter writes sent as one pipeline by
// WriteCounters. Keys are relative to the configured key prefix. Every key
// written gets TTL (refreshed by each write).
type CounterBatch struct {
	// Add adds elements to HyperLogLog keys (PFADD).
	Add map[string][]string
	// Merge merges HyperLogLogs, each a string in Redis's HyperLogLog
	// format, into keys (PFMERGE), through a temporary key of the same
	// hash slot: in Redis Cluster each key must have a {hash tag}.
	Merge map[string][]byte
	// Incr adds to integer counters (INCRBY).
	Incr map[string]int64
	// Set sets string values (SET).
	Set map[string]string
	// TTL is the expiry of every key written; it must be positive.
	TTL time.Duration
}

// errNoTTL: counters without expiry would grow forever.
var errNoTTL = errors.New("counter batch without a TTL")

// mergeTempTTL bounds how long a temporary key of Merge outlives a batch
// cut off between its SET and its DEL.
const mergeTempTTL = time.Minute

// WriteCounters sends b as one pipeline (one round trip): PFADD, INCRBY
// and SET, each followed by PEXPIRE; for each key of Merge, SET of the
// HyperLogLog to a temporary key (the key, then a random suffix of this
// call: no other replica or call writes it), PFMERGE into the key, DEL of
// the temporary key, PEXPIRE. It is skipped, with an error wrapping
// ErrRedisUnavailable, while Redis is in its failure back-off. A nil r is
// an error: the caller keeps its own counts without Redis.
func (r *Redis) WriteCounters(ctx context.Context, b CounterBatch) error {
	if r == nil {
		return ErrRedisUnavailable
	}
	if b.TTL <= 0 {
		return errNoTTL
	}
	if len(b.Add)+len(b.Merge)+len(b.Incr)+len(b.Set) == 0 {
		return nil
	}
	if !r.allow() {
		return ErrRedisUnavailable
	}
	octx, cancel := r.bound(ctx)
	defer cancel()
	pipe := r.client.Pipeline()
	for k, els := range b.Add {
		args := make([]any, len(els))
		for i, e := range els {
			args[i] = e
		}
		pipe.PFAdd(octx, r.prefix+k, args...)
		pipe.PExpire(octx, r.prefix+k, b.TTL)
	}
	if len(b.Merge) > 0 {
		suffix := ":merge:" + rand.Text()
		for k, hll := range b.Merge {
			tmp := r.prefix + k + suffix
			pipe.Set(octx, tmp, hll, mergeTempTTL)
			pipe.PFMerge(octx, r.prefix+k, tmp)
			pipe.Del(octx, tmp)
			pipe.PExpire(octx, r.prefix+k, b.TTL)
		}
	}
	for k, n := range b.Incr {
		pipe.IncrBy(octx, r.prefix+k, n)
		pipe.PExpire(octx, r.prefix+k, b.TTL)
	}
	for k, v := range b.Set {
		pipe.Set(octx, r.prefix+k, v, b.TTL)
	}
	_, err := pipe.Exec(octx)
	r.trips.Add(1)
	if r.report(ctx, err) {
		return fmt.Errorf("%w: write counters: %w", ErrRedisUnavailable, err)
	}
	if err != nil {
		return fmt.Errorf("write counters: %w", err)
	}
	return nil
}

// ReadCounters answers, in one pipeline (one round trip), the number of
// distinct elements in the union of each group of HyperLogLog keys in
// distinct (PFCOUNT; in Redis Cluster the keys of one group must share a
// hash slot: give them one {tag}), and the value of each key in get (""
// when missing).
func (r *Redis) ReadCounters(ctx context.Context, distinct [][]string, get []string) (counts []int64, values []string, err error) {
	if r == nil {
		return nil, nil, ErrRedisUnavailable
	}
	if !r.allow() {
		return nil, nil, ErrRedisUnavailable
	}
	octx, cancel := r.bound(ctx)
	defer cancel()
	pipe := r.client.Pipeline()
	pf := make([]*redis.IntCmd, len(distinct))
	for i, keys := range distinct {
		pk := make([]string, len(keys))
		for j, k := range keys {
			pk[j] = r.prefix + k
		}
		pf[i] = pipe.PFCount(octx, pk...)
	}
	gc := make([]*redis.StringCmd, len(get))
	for i, k := range get {
		gc[i] = pipe.Get(octx, r.prefix+k)
	}
	_, err = pipe.Exec(octx)
	r.trips.Add(1)
	if err != nil && !errors.Is(err, redis.Nil) {
		r.report(ctx, err)
		return nil, nil, fmt.Errorf("%w: read counters: %w", ErrRedisUnavailable, err)
	}
	r.report(ctx, nil)
	counts = make([]int64, len(pf))
	for i, c := range pf {
		counts[i] = c.Val()
	}
	values = make([]string, len(gc))
	for i, c := range gc {
		values[i] = c.Val()
	}
	return counts, values, nil
}

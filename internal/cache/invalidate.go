package cache

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Cross-replica invalidation. A Cache on Redis publishes the keys it
// invalidates or sets on one channel per key prefix; Redis.Run subscribes
// to it and drops those keys from the in-process tier of every other Cache
// of the same name, in this process and in the other replicas. A replica
// that misses messages (its subscription broke) empties its in-process
// tiers once the subscription is back, so a gap costs Redis lookups, never
// stale answers beyond the gap itself.

// subscribePing is how long the subscription may stay silent before Run
// pings it: a connection that died without a reset is noticed after at
// most two of these.
const subscribePing = 5 * time.Second

// maxMessageKeys bounds the keys of one published message; larger
// invalidations are split.
const maxMessageKeys = 512

// invalidation is one published message.
type invalidation struct {
	// Cache is the name of the cache the keys belong to.
	Cache string `json:"c"`
	// Origin is the id of the Cache that sent it; that one skips it.
	Origin string   `json:"o"`
	Keys   []string `json:"k"`
}

// listener is one Cache's in-process tier, as Run reaches it.
type listener struct {
	origin string
	drop   func(keys []string)
	clear  func()
}

// listeners are the Caches built on one Redis, by name.
type listeners struct {
	mu sync.Mutex
	m  map[string]map[*listener]struct{}
}

// listen registers l under name and returns the function that removes it.
func (r *Redis) listen(name string, l *listener) (remove func()) {
	r.subs.mu.Lock()
	defer r.subs.mu.Unlock()
	if r.subs.m == nil {
		r.subs.m = make(map[string]map[*listener]struct{})
	}
	set := r.subs.m[name]
	if set == nil {
		set = make(map[*listener]struct{})
		r.subs.m[name] = set
	}
	set[l] = struct{}{}
	return func() {
		r.subs.mu.Lock()
		defer r.subs.mu.Unlock()
		delete(r.subs.m[name], l)
		if len(r.subs.m[name]) == 0 {
			delete(r.subs.m, name)
		}
	}
}

// dispatch drops the keys of one message from every listener of its cache
// but the one that sent it.
func (r *Redis) dispatch(payload string) {
	var msg invalidation
	if err := json.Unmarshal([]byte(payload), &msg); err != nil || msg.Cache == "" {
		r.log.Warn("undecodable invalidation message ignored", zap.Error(err))
		return
	}
	r.subs.mu.Lock()
	var targets []*listener
	for l := range r.subs.m[msg.Cache] {
		if l.origin != msg.Origin {
			targets = append(targets, l)
		}
	}
	r.subs.mu.Unlock()
	for _, l := range targets {
		l.drop(msg.Keys)
	}
}

// clearAll empties the in-process tier of every cache on r.
func (r *Redis) clearAll() {
	r.subs.mu.Lock()
	var targets []*listener
	for _, set := range r.subs.m {
		for l := range set {
			targets = append(targets, l)
		}
	}
	r.subs.mu.Unlock()
	for _, l := range targets {
		l.clear()
	}
}

// publishCmds queues on pipe the messages that tell the other caches named
// name to drop keys.
func (r *Redis) publishCmds(ctx context.Context, pipe redis.Pipeliner, name, origin string, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), maxMessageKeys)
		b, err := json.Marshal(invalidation{Cache: name, Origin: origin, Keys: keys[:n]})
		if err != nil {
			return err
		}
		pipe.Publish(ctx, r.channel, b)
		keys = keys[n:]
	}
	return nil
}

// Run receives the invalidations that caches on this Redis publish, from
// this and every other process, and drops those keys from the in-process
// tiers of this process's caches, until ctx ends; then it returns nil.
// Without it a replica serves its in-process copy of a key that another
// replica invalidated or set until the copy expires (at most
// Config.LocalMaxTTL when set).
//
// When the subscription breaks, Run logs it once and subscribes again with
// back-off (failure_backoff up to failure_backoff_max). Every time the
// subscription is (re)established it empties the in-process tiers of the
// caches on r, since messages sent meanwhile were missed. A nil *Redis
// returns nil at once.
func (r *Redis) Run(ctx context.Context) error {
	if r == nil {
		return nil
	}
	// failure_backoff may be 0 (no back-off for commands); resubscribing
	// still waits a little, so that a refused connection is not a busy loop.
	first := max(r.backoff, minResubscribeWait)
	wait := first
	lost := false
	for {
		err := r.subscribe(ctx, func() {
			r.clearAll()
			if lost {
				r.log.Info("invalidation subscription restored; in-process tiers emptied")
				lost = false
			}
			wait = first
		})
		if ctx.Err() != nil {
			return nil
		}
		if !lost {
			r.log.Warn("invalidation subscription lost, resubscribing", zap.Error(err))
			lost = true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(wait*2, max(r.backoffMax, first))
	}
}

// minResubscribeWait is the least wait before subscribing again.
const minResubscribeWait = 100 * time.Millisecond

// subscribe holds one subscription until it fails or ctx ends, calling
// subscribed each time Redis confirms it.
func (r *Redis) subscribe(ctx context.Context, subscribed func()) error {
	ps := r.client.Subscribe(ctx, r.channel)
	// A blocked receive does not watch ctx; closing the PubSub ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		if stop() {
			_ = ps.Close()
		}
	}()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, r.ping)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged && ctx.Err() == nil {
				// Silence: ask for a pong, which must come within
				// the next timeout.
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				pinged = true
				continue
			}
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				subscribed()
			}
		case *redis.Message:
			r.dispatch(m.Payload)
		}
	}
}

// newOrigin returns a random id for a Cache's messages.
func newOrigin() string {
	return rand.Text()
}

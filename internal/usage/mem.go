package usage

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/authgate/authgate/internal/cache"
)

// memStore keeps one replica's counts when there is no Redis: a distinct
// counter per key (hll: 16 KiB at most however many users; exact for
// small counts of users added one by one, Redis's PFCOUNT of the same
// registers once a sketch is merged), and keys that expire as in Redis.
type memStore struct {
	now func() time.Time

	mu      sync.Mutex
	users   map[string]*hll
	values  map[string]string
	expires map[string]time.Time
}

func newMemStore() *memStore {
	return &memStore{
		now:     time.Now,
		users:   map[string]*hll{},
		values:  map[string]string{},
		expires: map[string]time.Time{},
	}
}

// WriteCounters implements store.
func (m *memStore) WriteCounters(_ context.Context, b cache.CounterBatch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for k, at := range m.expires {
		if !now.Before(at) {
			delete(m.users, k)
			delete(m.values, k)
			delete(m.expires, k)
		}
	}
	exp := now.Add(b.TTL)
	for k, els := range b.Add {
		s := m.users[k]
		if s == nil {
			s = &hll{}
			m.users[k] = s
		}
		for _, e := range els {
			s.add(hashUser(e))
		}
		m.expires[k] = exp
	}
	for k, blob := range b.Merge {
		s := m.users[k]
		if s == nil {
			s = &hll{}
			m.users[k] = s
		}
		if err := s.mergeDense(blob); err != nil {
			return fmt.Errorf("merge into %s: %w", k, err)
		}
		m.expires[k] = exp
	}
	for k, n := range b.Incr {
		v, _ := strconv.ParseInt(m.values[k], 10, 64)
		m.values[k] = strconv.FormatInt(v+n, 10)
		m.expires[k] = exp
	}
	for k, v := range b.Set {
		m.values[k] = v
		m.expires[k] = exp
	}
	return nil
}

// ReadCounters implements store. The users of several keys are counted
// once, as by PFCOUNT of several keys.
func (m *memStore) ReadCounters(_ context.Context, distinct [][]string, get []string) ([]int64, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	counts := make([]int64, len(distinct))
	for i, keys := range distinct {
		var union hll
		for _, k := range keys {
			if s := m.users[k]; s != nil {
				union.merge(s)
			}
		}
		counts[i] = union.count()
	}
	values := make([]string, len(get))
	for i, k := range get {
		values[i] = m.values[k]
	}
	return counts, values, nil
}

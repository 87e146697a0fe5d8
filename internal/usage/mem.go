package usage

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/authgate/authgate/internal/cache"
)

// memStore keeps one replica's counts when there is no Redis: exact sets
// instead of HyperLogLogs, bounded by memMaxElements, and keys that expire
// as in Redis.
type memStore struct {
	now func() time.Time

	mu       sync.Mutex
	sets     map[string]map[string]struct{}
	values   map[string]string
	expires  map[string]time.Time
	elements int
}

func newMemStore() *memStore {
	return &memStore{
		now:     time.Now,
		sets:    map[string]map[string]struct{}{},
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
			m.elements -= len(m.sets[k])
			delete(m.sets, k)
			delete(m.values, k)
			delete(m.expires, k)
		}
	}
	exp := now.Add(b.TTL)
	for k, els := range b.Add {
		s := m.sets[k]
		if s == nil {
			s = map[string]struct{}{}
			m.sets[k] = s
		}
		for _, e := range els {
			if _, ok := s[e]; !ok && m.elements < memMaxElements {
				s[e] = struct{}{}
				m.elements++
			}
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

// ReadCounters implements store.
func (m *memStore) ReadCounters(_ context.Context, distinct [][]string, get []string) ([]int64, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	counts := make([]int64, len(distinct))
	for i, keys := range distinct {
		union := map[string]struct{}{}
		for _, k := range keys {
			for e := range m.sets[k] {
				union[e] = struct{}{}
			}
		}
		counts[i] = int64(len(union))
	}
	values := make([]string, len(get))
	for i, k := range get {
		values[i] = m.values[k]
	}
	return counts, values, nil
}

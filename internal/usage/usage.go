// Package usage counts which token provider (legacy, Firebase)
// authenticates requests, on which route and for how many distinct users,
// so that an operator can tell when legacy tokens may be turned off.
//
// The request path only records (provider, route, user id) into an
// in-process batch: a request counter and a HyperLogLog sketch of the
// users (16 KiB, whatever their number) per provider and route. A
// background flusher (Recorder.Run) sends each batch to Redis in one
// pipeline: each sketch merged (PFMERGE) into a HyperLogLog per provider
// and UTC day (and per route and day) for distinct users, request
// counters, and the last time a legacy token was seen, every key with a
// TTL of 32 days. All replicas write the same keys, so the windows of 1, 7
// and 30 days are counted across replicas; a sketch holds the registers
// that PFADD of its users would have set, so replicas that PFADD user ids
// (earlier releases) count the same users once with it. Without Redis
// each replica keeps its own counts in memory (Stats.Shared is false),
// distinct users in a HyperLogLog of at most 16 KiB per key as well.
package usage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/verify"
)

// Config configures the usage telemetry.
type Config struct {
	// Enabled records usage. Default true; false records nothing and the
	// migration report shows no telemetry.
	Enabled bool `yaml:"enabled"`
	// FlushInterval is how often a replica sends its batch to Redis and
	// refreshes the metrics' windows. Default 10s; 1s..10m.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{Enabled: true, FlushInterval: 10 * time.Second}
}

// Validate reports every problem, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	if c.FlushInterval < time.Second || c.FlushInterval > 10*time.Minute {
		errs = append(errs, fmt.Errorf("flush_interval: %s must be 1s..10m", c.FlushInterval))
	}
	return errors.Join(errs...)
}

// Windows are the day counts the telemetry reports.
var Windows = [...]int{1, 7, maxWindow}

// maxWindow is the longest window, in days.
const maxWindow = 30

// Providers are the token providers counted, in report order.
var Providers = [...]verify.Provider{verify.ProviderLegacy, verify.ProviderFirebase}

// keyTTL keeps a day's keys past the longest window.
const keyTTL = 32 * 24 * time.Hour

// store is where batches go: *cache.Redis, or memStore without Redis.
type store interface {
	WriteCounters(ctx context.Context, b cache.CounterBatch) error
	ReadCounters(ctx context.Context, distinct [][]string, get []string) ([]int64, []string, error)
}

type routeKey struct {
	provider verify.Provider
	route    string
}

// tally is what a batch holds for one provider and route.
type tally struct {
	requests int64
	// users are the users seen, if hasUsers; allocated with the first
	// user and, cleared, kept for the next batches.
	users    *sketch
	hasUsers bool
}

// Recorder records usage and flushes it. Record is safe for concurrent use
// and cheap; Run owns the flusher. A nil *Recorder records nothing.
type Recorder struct {
	cfg    Config
	store  store
	shared bool
	// routes are the route names that Stats reports on.
	routes atomic.Pointer[[]string]
	now    func() time.Time
	log    *zap.Logger

	mu    sync.Mutex
	batch map[routeKey]*tally // since the last flush
	// spare is the previous batch, its tallies cleared, for reuse: a
	// route's tally and sketch are allocated once, not per flush. nil
	// while a flush sends it.
	spare  map[routeKey]*tally
	legacy bool // a legacy token was seen since the last flush
	// flushMu serialises flushes (Run's, and the final one), and guards
	// union.
	flushMu sync.Mutex
	// union is, during a flush, each provider's users on every route.
	union [len(Providers)]sketch

	m metrics
}

type metrics struct {
	requests      [len(Providers)]prometheus.Counter
	users, winReq [len(Providers)][len(Windows)]prometheus.Gauge
	lastLegacy    prometheus.Gauge
	flushOK       prometheus.Counter
	flushErr      prometheus.Counter
	shared        prometheus.Gauge
}

// Option adjusts a Recorder.
type Option func(*Recorder)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(r *Recorder) { r.now = now } }

// New builds a recorder for the named routes. rdb is the shared Redis; nil
// keeps this replica's counts in memory. reg may be nil.
func New(cfg Config, rdb *cache.Redis, routes []string, log *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Recorder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Recorder{
		cfg:   cfg,
		now:   time.Now,
		log:   log.Named("usage"),
		batch: map[routeKey]*tally{},
		spare: map[routeKey]*tally{},
	}
	r.SetRoutes(routes)
	if rdb != nil {
		r.store, r.shared = rdb, true
	} else {
		r.store = newMemStore()
	}
	for _, o := range opts {
		o(r)
	}
	if m, ok := r.store.(*memStore); ok {
		m.now = r.now
	}
	if err := r.newMetrics(reg); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Recorder) newMetrics(reg prometheus.Registerer) error {
	req := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "migration_requests_total",
		Help: "Requests with a verified token on this replica, by token provider; added at each flush.",
	}, []string{"provider"})
	users := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "migration_users",
		Help: "Distinct users seen in the last window (UTC days, today included) by provider; across replicas with Redis, else this replica's. Refreshed at each flush.",
	}, []string{"provider", "window"})
	winReq := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "migration_window_requests",
		Help: "Requests with a verified token in the last window (UTC days, today included) by provider; across replicas with Redis, else this replica's. Refreshed at each flush.",
	}, []string{"provider", "window"})
	last := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "legacy_last_seen_timestamp_seconds",
		Help: "When a legacy token was last seen (to the flush interval); 0 when not in the last 32 days.",
	})
	flushes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "migration_flushes_total",
		Help: "Usage batch flushes by result (ok, error: the batch is lost).",
	}, []string{"result"})
	shared := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "migration_shared",
		Help: "1 when usage is counted across replicas in Redis, 0 when per replica.",
	})
	for i, p := range Providers {
		r.m.requests[i] = req.WithLabelValues(string(p))
		for j, w := range Windows {
			r.m.users[i][j] = users.WithLabelValues(string(p), windowLabel(w))
			r.m.winReq[i][j] = winReq.WithLabelValues(string(p), windowLabel(w))
		}
	}
	r.m.lastLegacy, r.m.shared = last, shared
	r.m.flushOK, r.m.flushErr = flushes.WithLabelValues("ok"), flushes.WithLabelValues("error")
	if r.shared {
		shared.Set(1)
	}
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{req, users, winReq, last, flushes, shared} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register usage metrics: %w", err)
		}
	}
	return nil
}

func windowLabel(days int) string { return strconv.Itoa(days) + "d" }

func providerIndex(p verify.Provider) int {
	if p == verify.ProviderFirebase {
		return 1
	}
	return 0
}

// Record notes one request with a verified token of provider on route for
// user (the platform user id; "" counts the request only). It hashes the
// user, then takes a mutex for one map lookup and a register update: no
// I/O, and no allocation once the route has been seen in the last two
// flush intervals.
func (r *Recorder) Record(provider verify.Provider, route, user string) {
	if r == nil {
		return
	}
	if provider != verify.ProviderLegacy && provider != verify.ProviderFirebase {
		return
	}
	var h uint64
	if user != "" {
		h = hashUser(user)
	}
	k := routeKey{provider: provider, route: route}
	r.mu.Lock()
	t := r.batch[k]
	if t == nil {
		t = &tally{}
		r.batch[k] = t
	}
	t.requests++
	if user != "" {
		if t.users == nil {
			t.users = new(sketch)
		}
		t.users.add(h)
		t.hasUsers = true
	}
	if provider == verify.ProviderLegacy {
		r.legacy = true
	}
	r.mu.Unlock()
}

// Run flushes every flush_interval until ctx ends, then flushes once more.
func (r *Recorder) Run(ctx context.Context) error {
	if !r.shared {
		r.log.Info("usage telemetry counts this replica only: no Redis configured")
	}
	t := time.NewTicker(r.cfg.FlushInterval)
	defer t.Stop()
	r.Refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = r.Flush(fctx)
			return nil
		case <-t.C:
			if r.Flush(ctx) == nil {
				r.Refresh(ctx)
			}
		}
	}
}

// Key names, relative to the Redis key prefix. The {usage} hash tag keeps
// them in one Cluster slot, so one PFCOUNT can merge a window's days.
func usersKey(p verify.Provider, route, day string) string {
	if route == "" {
		return "usage:{usage}:users:" + string(p) + ":" + day
	}
	return "usage:{usage}:users:" + string(p) + ":route:" + route + ":" + day
}

func requestsKey(p verify.Provider, route, day string) string {
	if route == "" {
		return "usage:{usage}:requests:" + string(p) + ":" + day
	}
	return "usage:{usage}:requests:" + string(p) + ":route:" + route + ":" + day
}

const lastLegacyKey = "usage:{usage}:legacy_last_seen"

func dayOf(t time.Time) string { return t.UTC().Format("20060102") }

// Flush sends what was recorded since the last flush as one batch (one
// Redis pipeline). A batch that fails is dropped and counted.
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	batch := r.batch
	r.batch, r.spare = r.spare, nil
	legacy := r.legacy
	r.legacy = false
	r.mu.Unlock()
	defer func() {
		// Keep the tallies of routes seen in this batch, cleared, for the
		// batch after next; forget those of routes not seen (a route
		// renamed or gone), with their sketches.
		for k, t := range batch {
			if t.requests == 0 {
				delete(batch, k)
				continue
			}
			t.requests = 0
			if t.hasUsers {
				clear(t.users[:])
				t.hasUsers = false
			}
		}
		r.mu.Lock()
		r.spare = batch
		r.mu.Unlock()
	}()
	var perProvider [len(Providers)]int64
	var withUsers [len(Providers)]bool
	for k, t := range batch {
		pi := providerIndex(k.provider)
		perProvider[pi] += t.requests
		withUsers[pi] = withUsers[pi] || t.hasUsers
	}
	if perProvider == [len(Providers)]int64{} {
		return nil
	}
	for i, n := range perProvider {
		r.m.requests[i].Add(float64(n))
	}
	now := r.now()
	day := dayOf(now)
	b := cache.CounterBatch{Merge: map[string][]byte{}, Incr: map[string]int64{}, Set: map[string]string{}, TTL: keyTTL}
	for i := range r.union {
		if withUsers[i] {
			clear(r.union[i][:])
		}
	}
	for k, t := range batch {
		if t.requests == 0 {
			continue
		}
		if t.hasUsers {
			r.union[providerIndex(k.provider)].merge(t.users)
			b.Merge[usersKey(k.provider, k.route, day)] = t.users.appendDense(nil)
		}
		b.Incr[requestsKey(k.provider, "", day)] += t.requests
		b.Incr[requestsKey(k.provider, k.route, day)] += t.requests
	}
	for i, p := range Providers {
		if withUsers[i] {
			b.Merge[usersKey(p, "", day)] = r.union[i].appendDense(nil)
		}
	}
	if legacy {
		b.Set[lastLegacyKey] = strconv.FormatInt(now.Unix(), 10)
	}
	if err := r.store.WriteCounters(ctx, b); err != nil {
		r.m.flushErr.Inc()
		return fmt.Errorf("flush usage: %w", err)
	}
	r.m.flushOK.Inc()
	return nil
}

// Counts are one provider's numbers in one window.
type Counts struct {
	Users    int64 `json:"users"`
	Requests int64 `json:"requests"`
}

// Window is the numbers of the last Days UTC days, today included.
type Window struct {
	Days     int    `json:"days"`
	Legacy   Counts `json:"legacy"`
	Firebase Counts `json:"firebase"`
}

// RouteStats are a route's windows.
type RouteStats struct {
	Route   string   `json:"route"`
	Windows []Window `json:"windows"`
}

// Stats is what the telemetry knows. Users are distinct per window
// (HyperLogLog: within about 1%).
type Stats struct {
	// Shared is true when the numbers are across replicas (Redis), false
	// when they are this replica's own.
	Shared  bool         `json:"shared"`
	Windows []Window     `json:"windows"`
	Routes  []RouteStats `json:"routes,omitempty"`
	// LastLegacySeen is when a legacy token was last seen, to the flush
	// interval; nil when not in the last 32 days.
	LastLegacySeen *time.Time `json:"last_legacy_seen"`
}

// SetRoutes replaces the route names that Stats reports on, for a
// reloaded configuration. Safe for concurrent use.
func (r *Recorder) SetRoutes(routes []string) {
	routes = slices.Clone(routes)
	r.routes.Store(&routes)
}

// Stats reads the windows from the store (one round trip), per route too
// when routes is set. It does not flush.
func (r *Recorder) Stats(ctx context.Context, routes bool) (Stats, error) {
	if r == nil {
		return Stats{}, errors.New("usage telemetry is off")
	}
	now := r.now()
	scopes := []string{""}
	if routes {
		scopes = append(scopes, *r.routes.Load()...)
	}
	var days [maxWindow]string
	for i := range days {
		days[i] = dayOf(now.AddDate(0, 0, -i))
	}
	var distinct [][]string
	var get []string
	for _, scope := range scopes {
		for _, p := range Providers {
			for _, w := range Windows {
				keys := make([]string, w)
				for i := range w {
					keys[i] = usersKey(p, scope, days[i])
				}
				distinct = append(distinct, keys)
			}
			for _, d := range days {
				get = append(get, requestsKey(p, scope, d))
			}
		}
	}
	get = append(get, lastLegacyKey)
	counts, values, err := r.store.ReadCounters(ctx, distinct, get)
	if err != nil {
		return Stats{}, fmt.Errorf("read usage: %w", err)
	}
	st := Stats{Shared: r.shared}
	ci, gi := 0, 0
	for _, scope := range scopes {
		ws := make([]Window, len(Windows))
		for pi := range Providers {
			var users [len(Windows)]int64
			for wi := range Windows {
				users[wi] = counts[ci]
				ci++
			}
			var perDay [len(days)]int64
			for di := range days {
				perDay[di], _ = strconv.ParseInt(values[gi], 10, 64)
				gi++
			}
			for wi, w := range Windows {
				c := Counts{Users: users[wi]}
				for di := range w {
					c.Requests += perDay[di]
				}
				ws[wi].Days = w
				if pi == 0 {
					ws[wi].Legacy = c
				} else {
					ws[wi].Firebase = c
				}
			}
		}
		if scope == "" {
			st.Windows = ws
		} else {
			st.Routes = append(st.Routes, RouteStats{Route: scope, Windows: ws})
		}
	}
	if sec, err := strconv.ParseInt(values[gi], 10, 64); err == nil && sec > 0 {
		t := time.Unix(sec, 0).UTC()
		st.LastLegacySeen = &t
	}
	return st, nil
}

// Refresh sets the window gauges from Stats. A failure leaves them as
// they were.
func (r *Recorder) Refresh(ctx context.Context) {
	st, err := r.Stats(ctx, false)
	if err != nil {
		if ce := r.log.Check(zap.DebugLevel, "usage refresh skipped"); ce != nil {
			ce.Write(zap.Error(err))
		}
		return
	}
	for wi, w := range st.Windows {
		r.m.users[0][wi].Set(float64(w.Legacy.Users))
		r.m.users[1][wi].Set(float64(w.Firebase.Users))
		r.m.winReq[0][wi].Set(float64(w.Legacy.Requests))
		r.m.winReq[1][wi].Set(float64(w.Firebase.Requests))
	}
	if st.LastLegacySeen != nil {
		r.m.lastLegacy.Set(float64(st.LastLegacySeen.Unix()))
	} else {
		r.m.lastLegacy.Set(0)
	}
}

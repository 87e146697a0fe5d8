package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/proxy"
)

// restartKeys are the key paths (and prefixes, ending in ".") that serve
// reads once: listeners, connection pools and clients, and what was built
// on them. A reload keeps their running values and names those that
// changed in a warning. The Helm chart's "authgate.restartConfig"
// (deploy/helm/authgate/templates/_helpers.tpl) rolls the pods on a change
// of these keys only: keep the two in step.
var restartKeys = []string{
	"server.",                                              // listeners, the admin API
	"log.format", "log.buffer_bytes", "log.flush_interval", // the log sink
	"ext_authz_grpc.addr", "ext_authz_grpc.max_recv_msg_size", "ext_authz_grpc.max_concurrent_streams",
	"assertion.enabled", "assertion.jwks_path", // routes of the admin listener
	"verify.cache.",               // the token caches
	"verify.firebase.project_id",  // the Firebase Admin client's project
	"verify.firebase.revocation.", // the Firebase Admin client
	"federation.",                 // the PostgreSQL pool, the worker
	"cache.",                      // Redis and the in-process tiers
	"tracing.",                    // the tracer provider
	"auth_api.",                   // built once, with its Firebase client
	"usage.",                      // the telemetry recorder
}

// needsRestart reports whether the key at path is one of restartKeys.
func needsRestart(path string) bool {
	for _, k := range restartKeys {
		if path == k || (strings.HasSuffix(k, ".") && strings.HasPrefix(path, k)) {
			return true
		}
	}
	return false
}

// keepRestartKeys sets every restart key of next that differs from cur
// back to cur's value, and returns their paths. sums and prevSums are the
// content of named files (see fileKeys) now and at the running
// configuration's load: a restart key's file whose content changed is
// named too.
func keepRestartKeys(next *Config, cur Config, sums, prevSums map[string]fileSum) []string {
	old := map[string]reflect.Value{}
	for _, k := range envKeys(&cur) {
		old[k.path] = k.v
	}
	var kept []string
	for _, k := range envKeys(next) {
		if !needsRestart(k.path) {
			continue
		}
		o := old[k.path]
		if !reflect.DeepEqual(k.v.Interface(), o.Interface()) {
			k.v.Set(o)
			kept = append(kept, k.path)
			continue
		}
		for _, f := range namedFiles(k) {
			if sums[f] != prevSums[f] {
				kept = append(kept, k.path+" (content of "+f+")")
			}
		}
	}
	return kept
}

// namedFiles returns the files that key k names: keys ending in _file
// hold one, keys ending in _files a list.
func namedFiles(k envKey) []string {
	switch {
	case strings.HasSuffix(k.path, "_file"):
		if s := k.v.String(); s != "" {
			return []string{s}
		}
	case strings.HasSuffix(k.path, "_files"):
		var out []string
		for i := 0; i < k.v.Len(); i++ {
			if s := k.v.Index(i).String(); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// fileSum is a file's SHA-256, or zero when it cannot be read.
type fileSum [sha256.Size]byte

// watchedFiles lists the configuration file and every file cfg names.
func watchedFiles(path string, cfg Config) []string {
	out := []string{path}
	for _, k := range envKeys(&cfg) {
		out = append(out, namedFiles(k)...)
	}
	slices.Sort(out[1:])
	return slices.Compact(out)
}

// sumFiles reads every file of paths. Reading through a path follows
// symlinks, so a Kubernetes mount's swap of its ..data link shows as a
// new content.
func sumFiles(paths []string) map[string]fileSum {
	out := make(map[string]fileSum, len(paths))
	for _, p := range paths {
		var s fileSum
		if b, err := os.ReadFile(p); err == nil {
			s = sha256.Sum256(b)
		}
		out[p] = s
	}
	return out
}

// reloader re-reads the configuration file on SIGHUP and when the file or
// a file it names changes, and applies what may change while serving.
// Reloads run one at a time.
type reloader struct {
	path    string
	environ []string
	a       *app
	level   zap.AtomicLevel
	log     *zap.Logger

	reloads    *prometheus.CounterVec
	generation prometheus.Gauge
	lastOK     prometheus.Gauge

	mu  sync.Mutex
	cur Config // the configuration running
	gen int
	// sums are the watched files' content when last read for a reload,
	// and curSums when the running configuration was loaded.
	sums, curSums map[string]fileSum
	// seen is what the watch read last when it differed from sums: a
	// change reloads once it has held for a whole interval, so that a
	// file caught half-written (by an editor or a script that does not
	// rename into place) is not loaded.
	seen map[string]fileSum
}

// newReloader registers the reload metrics; cfg is the configuration a
// was built from, read from path.
func newReloader(path string, environ []string, cfg Config, a *app, level zap.AtomicLevel, reg prometheus.Registerer) (*reloader, error) {
	r := &reloader{path: path, environ: environ, a: a, level: level, log: a.log.Named("reload"), cur: cfg, gen: 1}
	r.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "config_reloads_total",
		Help: "Configuration reloads by result: ok (applied) or error (the running configuration kept).",
	}, []string{"result"})
	r.generation = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "config_generation",
		Help: "The running configuration's generation: 1 at start, one more at every applied reload.",
	})
	r.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "config_last_reload_success_timestamp_seconds",
		Help: "When the running configuration was loaded, at start or by a reload.",
	})
	for _, res := range []string{"ok", "error"} {
		r.reloads.WithLabelValues(res)
	}
	r.generation.Set(1)
	r.lastOK.SetToCurrentTime()
	for _, c := range []prometheus.Collector{r.reloads, r.generation, r.lastOK} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("reload: metrics: %w", err)
		}
	}
	r.sums = sumFiles(watchedFiles(path, cfg))
	r.curSums = r.sums
	return r, nil
}

// watch reloads on every value of hup, and when a watched file's content
// changes (reload.watch_interval, 0: never), until ctx is done.
func (r *reloader) watch(ctx context.Context, hup <-chan os.Signal) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		r.mu.Lock()
		interval := r.cur.Reload.WatchInterval
		r.mu.Unlock()
		var tick <-chan time.Time
		if interval > 0 {
			t.Reset(interval)
			tick = t.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			r.reload(ctx, "signal")
		case <-tick:
			if r.settled() {
				r.reload(ctx, "file")
			}
		}
	}
}

// emptySum is the sum of an empty file.
var emptySum = fileSum(sha256.Sum256(nil))

// settled reports whether the watched files' content differs from when
// they were last read for a reload, and is what it was at the previous
// tick. A file that has become empty is not settled: an in-place rewrite
// truncates before it writes, and two ticks that each fall between the
// two, in two rewrites, would otherwise see the same (empty) content and
// reload it. No configuration or secret is an empty file; SIGHUP still
// reloads at once.
func (r *reloader) settled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	paths := make([]string, 0, len(r.sums))
	for p := range r.sums {
		paths = append(paths, p)
	}
	now := sumFiles(paths)
	if maps.Equal(now, r.sums) {
		r.seen = nil
		return false
	}
	for p, s := range now {
		if s == emptySum && r.sums[p] != emptySum {
			r.seen = nil
			return false
		}
	}
	if maps.Equal(now, r.seen) {
		r.seen = nil
		return true
	}
	r.seen = now
	return false
}

// reload reads the configuration and applies it, or logs why not and
// keeps the running one. trigger says what asked ("signal", "file").
func (r *reloader) reload(ctx context.Context, trigger string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Read before the configuration: a file that changes while it loads
	// differs from these next time, and reloads again.
	sums := sumFiles(watchedFiles(r.path, r.cur))
	next, err := loadConfig(r.path, r.environ)
	// From now on watch the files that the new configuration names too,
	// even when it is refused: a missing secret file that appears
	// reloads.
	for p, s := range sumFiles(watchedFiles(r.path, next)) {
		if _, seen := sums[p]; !seen {
			sums[p] = s
		}
	}
	r.sums = sums
	var kept []string
	if err == nil {
		kept, err = r.apply(ctx, &next, sums)
	}
	if err != nil {
		r.reloads.WithLabelValues("error").Inc()
		// One line: a joined error's parts are separated by "; ".
		r.log.Error("configuration reload failed, the running configuration stays",
			zap.String("trigger", trigger), zap.String("config", r.path),
			zap.String("error", strings.ReplaceAll(err.Error(), "\n", "; ")),
			zap.Int("generation", r.gen))
		return
	}
	r.curSums = sums
	r.gen++
	r.reloads.WithLabelValues("ok").Inc()
	r.generation.Set(float64(r.gen))
	r.lastOK.SetToCurrentTime()
	if len(kept) > 0 {
		r.log.Warn("configuration keys changed that need a restart; they keep their running values",
			zap.Strings("keys", kept))
	}
	r.log.Info("configuration reloaded", zap.String("trigger", trigger), zap.String("config", r.path), zap.Int("generation", r.gen))
}

// apply validates next (loaded and valid), with the restart keys set back
// to their running values, and swaps it in; on an error nothing has
// changed. It returns the restart keys that kept their values.
func (r *reloader) apply(ctx context.Context, next *Config, sums map[string]fileSum) ([]string, error) {
	kept := keepRestartKeys(next, r.cur, sums, r.curSums)
	// Keys kept at their running values may not fit the new ones.
	if err := next.Validate(); err != nil {
		return nil, err
	}
	level, err := zapcore.ParseLevel(next.Log.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	keys, err := proxy.LoadAssertionKeys(next.Proxy.Assertion)
	if err != nil {
		return nil, err
	}
	g, err := r.a.verifier.Prepare(next.Verify, next.Proxy.ClaimNames())
	if err != nil {
		return nil, configerr.Prefix("verify.", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := g.Prefetch(pctx); err != nil {
		// As at start: readiness reports it, and the refresh retries.
		r.log.Warn("prefetching the new key sets' keys failed", zap.Error(err))
	}
	opts := []proxy.Option{proxy.WithVerifier(g), proxy.WithAccessLog(next.Log.AccessLog)}
	if next.Proxy.Assertion.Enabled {
		opts = append(opts, proxy.WithAssertionKeys(keys))
	}
	if err := r.a.handler.Reload(next.Proxy, opts...); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	// The public listener verifies under g already; the other users of
	// the verifier (auth API, admin API, readiness) now too.
	r.a.verifier.Use(g)
	r.level.SetLevel(level)
	if r.a.usage != nil {
		r.a.usage.SetRoutes(routeNames(*next))
	}
	r.cur = *next
	r.a.running.Store(next) // next is this reload's own, never written again
	return kept, nil
}

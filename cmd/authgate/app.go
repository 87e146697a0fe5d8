package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/zap"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/configerr"
	usagestats "github.com/authgate/authgate/internal/usage"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/verify"
)

// app is authgate wired from a Config: every component, the registry they
// report to, and what must run in the background and be closed at the end.
type app struct {
	log      *zap.Logger
	registry *prometheus.Registry
	reg      prometheus.Registerer // registry, with the authgate_ prefix
	// running is the configuration in use: newApp's, then a reload's.
	running  atomic.Pointer[Config]
	verifier *verify.Verifier
	store    *federation.Store    // nil when federation is off
	usage    *usagestats.Recorder // nil when usage.enabled is false
	admin    *proxy.Admin
	handler  *proxy.Handler
	extAuthz *proxy.ExtAuthzServer // nil when ext_authz_grpc.addr is ""

	background []func(ctx context.Context) error
	closers    []closer
	onClose    func(component string) // nil but in tests
	wg         sync.WaitGroup
}

// closer releases one component.
type closer struct {
	component string
	close     func()
}

// appOption changes how newApp builds; only tests use one.
type appOption func(*app)

// withCloseHook calls f with the name of each component that close
// releases, as it does.
func withCloseHook(f func(component string)) appOption {
	return func(a *app) { a.onClose = f }
}

// wiring is what one component's builder hands to those built after it.
type wiring struct {
	reg   prometheus.Registerer // the registry with the authgate_ prefix
	rdb   *cache.Redis          // nil without Redis
	vopts []verify.Option
	fopts []federation.Option
	popts []proxy.Option
	aopts []proxy.AdminOption
	admin proxy.AdminBackends // Users with federation; Linker and Retrier with Firebase too
}

// newApp builds every component. It opens no listener and starts no
// goroutine; Redis, PostgreSQL and key endpoints may be down. On an error
// it closes what it had built, and the error names the component, the
// configuration key where one is at fault, and the cause.
func newApp(ctx context.Context, cfg Config, log *zap.Logger, opts ...appOption) (*app, error) {
	a := &app{log: log, registry: prometheus.NewRegistry()}
	a.running.Store(&cfg)
	for _, o := range opts {
		o(a)
	}
	a.reg = a.registerProcessMetrics()
	w := &wiring{reg: a.reg}
	// In this order: each builder uses what the ones before it made.
	for _, build := range []func(context.Context, Config, *wiring) error{
		a.buildRedis,
		a.buildLocalCache,
		a.buildTracing,
		a.buildRevocation,
		a.buildVerifier,
		a.buildUsage,
		a.buildFederation,
		a.buildAdminAPI,
		a.buildAuthAPI,
		a.buildAssertion,
		a.buildProxy,
		a.buildExtAuthz,
	} {
		if err := build(ctx, cfg, w); err != nil {
			a.close()
			return nil, err
		}
	}
	return a, nil
}

// addCloser has close call release for component, after everything
// added later.
func (a *app) addCloser(component string, release func()) {
	a.closers = append(a.closers, closer{component: component, close: release})
}

// registerProcessMetrics registers the Go, process and build metrics and
// returns the registerer every component uses.
func (a *app) registerProcessMetrics() prometheus.Registerer {
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg := prometheus.WrapRegistererWithPrefix("authgate_", a.registry)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "build_info", Help: "Build version and commit; always 1."}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(version, commit, runtime.Version()).Set(1)
	reg.MustRegister(build)
	return reg
}

// Each builder below validates its configuration section first, though
// loadConfig did already: newApp is also called with configurations that
// did not pass through it, and a file named there may have changed since.
// Its problems then carry their key path.

// buildRedis opens the client of the shared cache's Redis tier, if one is
// configured. It connects on first use. OpenRedis fails only on its
// configuration.
func (a *app) buildRedis(_ context.Context, cfg Config, w *wiring) error {
	rdb, err := cache.OpenRedis(cfg.Cache.Redis, a.log)
	if err != nil {
		return fmt.Errorf("redis: %w", configerr.Prefix("cache.redis.", err))
	}
	if rdb == nil {
		return nil
	}
	a.addCloser("redis", func() { _ = rdb.Close() })
	if err := w.reg.Register(rdb.PoolCollector()); err != nil {
		return fmt.Errorf("redis: metrics: %w", err)
	}
	// Other replicas' invalidations (a logout, a changed user row) reach
	// this replica's in-process tiers through it.
	a.background = append(a.background, rdb.Run)
	w.rdb = rdb
	return nil
}

// buildLocalCache builds the in-process tier that every cache shares, so
// that cache.local_max_bytes bounds them together.
func (a *app) buildLocalCache(_ context.Context, cfg Config, w *wiring) error {
	if cfg.Cache.LocalMaxBytes == 0 {
		return nil
	}
	l, err := cache.NewLocal(cfg.Cache.LocalMaxBytes, a.log)
	if err != nil {
		return fmt.Errorf("cache: %w", configerr.Prefix("cache.", err))
	}
	a.addCloser("cache", func() { _ = l.Close() })
	w.vopts = append(w.vopts, verify.WithLocal(l))
	w.fopts = append(w.fopts, federation.WithLocal(l))
	return nil
}

// buildUsage builds the migration telemetry: shared through Redis when
// there is one, else this replica's own counts.
func (a *app) buildUsage(_ context.Context, cfg Config, w *wiring) error {
	if !cfg.Usage.Enabled {
		return nil
	}
	rec, err := usagestats.New(cfg.Usage, w.rdb, routeNames(cfg), a.log, w.reg)
	if err != nil {
		return fmt.Errorf("usage: %w", configerr.Prefix("usage.", err))
	}
	a.usage = rec
	a.background = append(a.background, rec.Run)
	w.popts = append(w.popts, proxy.WithUsage(rec))
	return nil
}

// buildTracing makes the tracer provider that every component gets.
func (a *app) buildTracing(ctx context.Context, cfg Config, w *wiring) error {
	if !cfg.Tracing.Enabled {
		return nil
	}
	tp, err := newTracerProvider(ctx, cfg.Tracing)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	a.addCloser("tracing", func() {
		if err := shutdownTracing(tp); err != nil {
			a.log.Warn("flushing spans failed", zap.Error(err))
		}
	})
	w.vopts = append(w.vopts, verify.WithTracerProvider(tp))
	w.fopts = append(w.fopts, federation.WithTracerProvider(tp))
	w.popts = append(w.popts, proxy.WithTracerProvider(tp, propagation.TraceContext{}))
	return nil
}

// buildRevocation makes the Firebase Admin client that revocation checks
// read user records with.
func (a *app) buildRevocation(ctx context.Context, cfg Config, w *wiring) error {
	fb := cfg.Verify.Firebase
	if !fb.Enabled || !fb.Revocation.Enabled {
		return nil
	}
	records, err := verify.NewFirebaseRecords(ctx, fb.ProjectID, fb.Revocation.CredentialsFile)
	if err != nil {
		return firebaseAdminError(revocationNeed(cfg), err)
	}
	w.vopts = append(w.vopts, verify.WithUserRecords(records))
	return nil
}

// buildVerifier builds the token verifier and its cache.
func (a *app) buildVerifier(_ context.Context, cfg Config, w *wiring) error {
	// A cached identity keeps only the claims that routes read.
	w.vopts = append(w.vopts, verify.WithCache(cfg.Cache, w.rdb), verify.WithClaims(cfg.Proxy.ClaimNames()))
	if w.rdb != nil && cfg.Federation.Enabled {
		// A token new to this replica and its user row: one Redis round
		// trip. buildFederation makes the store, before any request.
		w.vopts = append(w.vopts, verify.WithUserPrefetch(func(id verify.Identity) *cache.Prefetch {
			if a.store == nil {
				return nil
			}
			return a.store.PrefetchUser(id)
		}))
	}
	if err := cfg.Verify.Validate(); err != nil {
		return fmt.Errorf("verifier: %w", configerr.Prefix("verify.", err))
	}
	v, err := verify.New(cfg.Verify, a.log, w.reg, w.vopts...)
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	a.verifier = v
	a.addCloser("verifier", func() { _ = v.Close() })
	a.background = append(a.background, v.Run)
	return nil
}

// buildFederation opens the user table's pool (connecting on first use)
// and, where Firebase is configured for them, the Firebase Admin client of
// the federation worker and the admin API's link endpoint.
func (a *app) buildFederation(ctx context.Context, cfg Config, w *wiring) error {
	if !cfg.Federation.Enabled {
		return nil
	}
	if err := cfg.Federation.Validate(); err != nil {
		return fmt.Errorf("federation: %w", configerr.Prefix("federation.", err))
	}
	store, err := federation.Open(ctx, cfg.Federation, a.log, w.reg, append(w.fopts, federation.WithCache(cfg.Cache, w.rdb))...)
	if err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	a.store = store
	a.addCloser("federation", store.Close)
	a.background = append(a.background, store.Run)
	if cfg.Federation.MigrateOnStart {
		a.background = append(a.background, a.migrateUntilDone)
	}
	w.popts = append(w.popts, proxy.WithUsers(store))
	w.admin.Users = proxy.StoreAdminUsers(store)

	need, ok := federationNeed(cfg)
	if !ok {
		return nil
	}
	profiles, err := federation.NewFirebaseProfiles(ctx, cfg.Verify.Firebase.ProjectID, need.file)
	if err != nil {
		return firebaseAdminError(need, err)
	}
	if cfg.Federation.Worker.Enabled {
		a.background = append(a.background, func(ctx context.Context) error { return store.RunWorker(ctx, profiles) })
	}
	linker := storeLinker{store: store, profiles: profiles}
	w.admin.Linker, w.admin.Retrier = linker, linker
	return nil
}

// buildAdminAPI builds the admin users API when a secret is set.
func (a *app) buildAdminAPI(_ context.Context, cfg Config, w *wiring) error {
	if cfg.Server.Admin.apiSecretKey() == "" {
		return nil
	}
	if err := cfg.Server.Admin.AdminConfig.Validate(); err != nil {
		return fmt.Errorf("admin api: %w", configerr.Prefix("server.admin.", err))
	}
	if a.store != nil {
		m := newMigration(cfg, a.store, a.usage)
		m.Rules = func() (bool, []proxy.RouteConfig) {
			c := a.running.Load()
			return c.Verify.Legacy.Enabled, c.Proxy.Routes
		}
		w.admin.Migration = m
	}
	api, err := proxy.NewAdminAPI(cfg.Server.Admin.AdminConfig, w.admin, a.log, w.reg)
	if err != nil {
		return fmt.Errorf("admin api: %w", err)
	}
	w.aopts = append(w.aopts, proxy.WithAdminAPI(api))
	return nil
}

// buildAuthAPI builds the auth API; Validate made sure of Firebase,
// revocation and federation.
func (a *app) buildAuthAPI(ctx context.Context, cfg Config, w *wiring) error {
	if !cfg.AuthAPI.Enabled {
		return nil
	}
	if err := cfg.AuthAPI.Validate(); err != nil {
		return fmt.Errorf("auth api: %w", configerr.Prefix("auth_api.", err))
	}
	api, err := newAuthAPI(ctx, cfg, a.verifier, a.store, a.log, w.reg)
	if err != nil {
		return err
	}
	w.popts = append(w.popts, proxy.WithAuthAPI(api.Prefix(), api))
	return nil
}

// buildAssertion loads the signing and published keys of the identity
// assertion and serves their JWKS on the admin listener.
func (a *app) buildAssertion(_ context.Context, cfg Config, w *wiring) error {
	if !cfg.Proxy.Assertion.Enabled {
		return nil
	}
	keys, err := proxy.LoadAssertionKeys(cfg.Proxy.Assertion)
	if err != nil {
		return fmt.Errorf("assertion: %w", err)
	}
	w.popts = append(w.popts, proxy.WithAssertionKeys(keys))
	return nil
}

// buildProxy builds the admin listener's handler, with the readiness
// checks of what was built before, and the public handler.
func (a *app) buildProxy(_ context.Context, cfg Config, w *wiring) error {
	// The token API's health endpoint reports /readyz's checks; the admin
	// listener is built right after.
	ready := func(ctx context.Context) proxy.Readiness { return a.admin.Ready(ctx) }
	w.popts = append(w.popts, proxy.WithAccessLog(cfg.Log.AccessLog), proxy.WithReadiness(ready))
	h, err := proxy.New(cfg.Proxy, a.verifier, a.log, w.reg, w.popts...)
	if err != nil {
		// The proxy's keys sit at the top level of the file.
		return fmt.Errorf("proxy: %w", err)
	}
	a.handler = h
	if cfg.Proxy.Assertion.Enabled {
		// The keys of the configuration in use, reloaded or not.
		w.aopts = append(w.aopts, proxy.WithAdminJWKSOf(cfg.Proxy.Assertion.JWKSPath, h))
	}
	a.admin = proxy.NewAdmin(cfg.Server.Admin.AdminConfig, a.registry, a.readinessChecks(cfg, w), w.aopts...)
	return nil
}

// buildExtAuthz builds the Envoy ext_authz gRPC server, which decides with
// the public handler's pipeline, when ext_authz_grpc.addr is set; serve
// opens its listener.
func (a *app) buildExtAuthz(_ context.Context, cfg Config, _ *wiring) error {
	if cfg.Proxy.ExtAuthzGRPC.Addr == "" {
		return nil
	}
	a.extAuthz = proxy.NewExtAuthzServer(a.handler)
	return nil
}

// readinessChecks lists what /readyz checks.
func (a *app) readinessChecks(cfg Config, w *wiring) []proxy.Check {
	checks := []proxy.Check{
		{Name: "verify", Critical: true, Func: a.verifier.Check},
		{Name: "keys", Func: a.verifier.KeysFresh},
	}
	if w.rdb != nil {
		checks = append(checks, proxy.Check{Name: "redis", Func: w.rdb.Check})
	}
	if a.store != nil {
		// With on_unavailable: deny every request fails while PostgreSQL
		// is down, so readiness follows it; with allow authgate serves
		// degraded identities and PostgreSQL only degrades readiness.
		checks = append(checks, proxy.Check{Name: "postgres", Critical: cfg.Federation.OnUnavailable == federation.PolicyDeny, Func: a.store.Check})
	}
	return checks
}

// storeLinker links accounts for the admin API, checking the Firebase uid
// against the user records.
type storeLinker struct {
	store    *federation.Store
	profiles federation.Profiles
}

func (l storeLinker) LinkUser(ctx context.Context, userID, firebaseUID string) (federation.User, error) {
	return l.store.LinkUser(ctx, userID, firebaseUID, l.profiles)
}

// RetryFederation retries a failed federation for the admin API.
func (l storeLinker) RetryFederation(ctx context.Context, userID string) (federation.User, string, error) {
	return l.store.RetryFederation(ctx, userID, l.profiles)
}

// migrateUntilDone applies the migrations at start, retrying with back-off
// while PostgreSQL is unreachable, so that authgate serves (degraded) in the
// meantime instead of failing to start.
func (a *app) migrateUntilDone(ctx context.Context) error {
	wait := time.Second
	for {
		err := a.store.Migrate(ctx)
		if err == nil {
			a.log.Info("migrations applied")
			return nil
		}
		a.log.Warn("migrations failed, retrying", zap.Error(err), zap.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Minute)
	}
}

// prefetch fetches keys before the listeners open, so that the first
// requests do not wait. A failure is not fatal: readiness reports it, and
// the background refresh and the first request try again.
func (a *app) prefetch(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.verifier.Prefetch(ctx); err != nil {
		a.log.Warn("prefetching keys failed", zap.Error(err))
	}
}

// startBackground runs every background loop until ctx is done; close
// waits for them.
func (a *app) startBackground(ctx context.Context) {
	for _, run := range a.background {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := run(ctx); err != nil {
				a.log.Error("background task stopped", zap.Error(err))
			}
		}()
	}
}

// close releases everything newApp built, newest first, once the
// background loops are stopped (their ctx must be done).
func (a *app) close() {
	a.wg.Wait()
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i].close()
		if a.onClose != nil {
			a.onClose(a.closers[i].component)
		}
	}
}

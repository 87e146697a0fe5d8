package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/zap"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/verify"
)

// app is authgate wired from a Config: every component, the registry they
// report to, and what must run in the background and be closed at the end.
type app struct {
	log      *zap.Logger
	registry *prometheus.Registry
	verifier *verify.Verifier
	store    *federation.Store // nil when federation is off
	admin    *proxy.Admin
	handler  *proxy.Handler

	background []func(ctx context.Context) error
	closers    []func()
	wg         sync.WaitGroup
}

// newApp builds every component. It opens no listener and starts no
// goroutine; Redis and key endpoints may be down.
func newApp(ctx context.Context, cfg Config, log *zap.Logger) (a *app, err error) {
	a = &app{log: log, registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg := prometheus.WrapRegistererWithPrefix("authgate_", a.registry)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "build_info", Help: "Build version and commit; always 1."}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(version, commit, runtime.Version()).Set(1)
	reg.MustRegister(build)

	rdb, err := cache.OpenRedis(cfg.Cache.Redis, log)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	if rdb != nil {
		a.closers = append(a.closers, func() { _ = rdb.Close() })
		if err := reg.Register(rdb.PoolCollector()); err != nil {
			return nil, fmt.Errorf("redis metrics: %w", err)
		}
		// Other replicas' invalidations (a logout, a changed user row)
		// reach this replica's in-process tiers through it.
		a.background = append(a.background, rdb.Run)
	}
	// A cached identity keeps only the claims that routes read.
	vopts := []verify.Option{verify.WithCache(cfg.Cache, rdb), verify.WithClaims(cfg.Proxy.ClaimNames())}
	if rdb != nil && cfg.Federation.Enabled {
		// A token new to this replica and its user row: one Redis round
		// trip. The store is built below, before any request.
		vopts = append(vopts, verify.WithUserPrefetch(func(id verify.Identity) *cache.Prefetch {
			if a.store == nil {
				return nil
			}
			return a.store.PrefetchUser(id)
		}))
	}
	var popts []proxy.Option
	var fopts []federation.Option
	if cfg.Tracing.Enabled {
		tp, err := newTracerProvider(ctx, cfg.Tracing)
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		a.closers = append(a.closers, func() {
			if err := shutdownTracing(tp); err != nil {
				log.Warn("flushing spans failed", zap.Error(err))
			}
		})
		vopts = append(vopts, verify.WithTracerProvider(tp))
		fopts = append(fopts, federation.WithTracerProvider(tp))
		popts = append(popts, proxy.WithTracerProvider(tp, propagation.TraceContext{}))
	}
	if fb := cfg.Verify.Firebase; fb.Enabled && fb.Revocation.Enabled {
		records, err := verify.NewFirebaseRecords(ctx, fb.ProjectID, fb.Revocation.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("firebase admin: %w", err)
		}
		vopts = append(vopts, verify.WithUserRecords(records))
	}
	a.verifier, err = verify.New(cfg.Verify, log, reg, vopts...)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	a.closers = append(a.closers, func() { _ = a.verifier.Close() })
	a.background = append(a.background, a.verifier.Run)

	checks := []proxy.Check{
		{Name: "verify", Critical: true, Func: a.verifier.Check},
		{Name: "keys", Func: a.verifier.KeysFresh},
	}
	if rdb != nil {
		checks = append(checks, proxy.Check{Name: "redis", Func: rdb.Check})
	}
	popts = append(popts, proxy.WithAccessLog(cfg.Log.AccessLog))
	var adminAPI proxy.AdminBackends
	if cfg.Federation.Enabled {
		a.store, err = federation.Open(ctx, cfg.Federation, log, reg, append(fopts, federation.WithCache(cfg.Cache, rdb))...)
		if err != nil {
			return nil, fmt.Errorf("federation: %w", err)
		}
		a.closers = append(a.closers, a.store.Close)
		a.background = append(a.background, a.store.Run)
		if cfg.Federation.MigrateOnStart {
			a.background = append(a.background, a.migrateUntilDone)
		}
		// With on_unavailable: deny every request fails while PostgreSQL
		// is down, so readiness follows it; with allow authgate serves
		// degraded identities and PostgreSQL only degrades readiness.
		checks = append(checks, proxy.Check{Name: "postgres", Critical: cfg.Federation.OnUnavailable == federation.PolicyDeny, Func: a.store.Check})
		popts = append(popts, proxy.WithUsers(a.store))

		adminAPI.Users = proxy.StoreAdminUsers(a.store)
		// Validate allows the worker only with Firebase; the admin API
		// links and retries federations only with it.
		if fb := cfg.Verify.Firebase; fb.Enabled && (cfg.Federation.Worker.Enabled || cfg.Server.Admin.apiSecretKey() != "") {
			creds := cfg.Federation.FirebaseCredentialsFile
			if creds == "" {
				creds = fb.Revocation.CredentialsFile
			}
			profiles, err := federation.NewFirebaseProfiles(ctx, fb.ProjectID, creds)
			if err != nil {
				return nil, fmt.Errorf("firebase admin for federation: %w", err)
			}
			if cfg.Federation.Worker.Enabled {
				a.background = append(a.background, func(ctx context.Context) error { return a.store.RunWorker(ctx, profiles) })
			}
			linker := storeLinker{store: a.store, profiles: profiles}
			adminAPI.Linker, adminAPI.Retrier = linker, linker
		}
	}
	var aopts []proxy.AdminOption
	if cfg.Server.Admin.apiSecretKey() != "" {
		api, err := proxy.NewAdminAPI(cfg.Server.Admin.AdminConfig, adminAPI, log, reg)
		if err != nil {
			return nil, fmt.Errorf("admin api: %w", err)
		}
		aopts = append(aopts, proxy.WithAdminAPI(api))
	}
	if cfg.AuthAPI.Enabled { // Validate made sure of Firebase, revocation and federation
		api, err := newAuthAPI(ctx, cfg, a.verifier, a.store, log, reg)
		if err != nil {
			return nil, err
		}
		popts = append(popts, proxy.WithAuthAPI(api.Prefix(), api))
	}
	a.admin = proxy.NewAdmin(cfg.Server.Admin.AdminConfig, a.registry, checks, aopts...)
	popts = append(popts, proxy.WithReadiness(a.admin.Ready))
	a.handler, err = proxy.New(cfg.Proxy, a.verifier, log, reg, popts...)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return a, nil
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
		a.closers[i]()
	}
}

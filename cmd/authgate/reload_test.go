package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/authgate/authgate/verify/verifytest"
)

// TestRestartKeysExist checks that every entry of restartKeys names a
// configuration key or a section, so that a renamed key cannot silently
// become reloadable.
func TestRestartKeysExist(t *testing.T) {
	cfg := defaultConfig()
	keys := envKeys(&cfg)
	for _, rk := range restartKeys {
		found := slices.ContainsFunc(keys, func(k envKey) bool {
			return k.path == rk || (strings.HasSuffix(rk, ".") && strings.HasPrefix(k.path, rk))
		})
		if !found {
			t.Errorf("restartKeys entry %q names no configuration key", rk)
		}
	}
}

func TestKeepRestartKeys(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*Config)
		wantKept []string
		// check reports whether the kept configuration is right.
		check func(Config) bool
	}{
		{
			name:     "reloadable key",
			edit:     func(c *Config) { c.Log.Level = "debug"; c.Proxy.TrustedProxies = []string{"10.0.0.0/8"} },
			wantKept: nil,
			check:    func(c Config) bool { return c.Log.Level == "debug" && len(c.Proxy.TrustedProxies) == 1 },
		},
		{
			name:     "listener address",
			edit:     func(c *Config) { c.Server.Public.Addr = ":8081"; c.Log.Level = "warn" },
			wantKept: []string{"server.public.addr"},
			check:    func(c Config) bool { return c.Server.Public.Addr == ":8080" && c.Log.Level == "warn" },
		},
		{
			name: "pool size and Redis address",
			edit: func(c *Config) {
				c.Federation.MaxConns = 50
				c.Cache.Redis.Addrs = []string{"redis:6379"}
			},
			wantKept: []string{"federation.max_conns", "cache.redis.addrs"},
			check:    func(c Config) bool { return c.Federation.MaxConns == 10 && len(c.Cache.Redis.Addrs) == 0 },
		},
		{
			name:     "verifier cache ttl",
			edit:     func(c *Config) { c.Verify.Cache.TTL = time.Minute },
			wantKept: []string{"verify.cache.ttl"},
			check:    func(c Config) bool { return c.Verify.Cache.TTL == 5*time.Minute },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := defaultConfig()
			tt.edit(&next)
			got := keepRestartKeys(&next, defaultConfig(), nil, nil)
			if !slices.Equal(got, tt.wantKept) {
				t.Errorf("keepRestartKeys() = %q, want %q", got, tt.wantKept)
			}
			if !tt.check(next) {
				t.Errorf("configuration after keepRestartKeys is not as expected: %+v", next)
			}
		})
	}
}

// TestKeepRestartKeysFileContent names a restart key whose file's content
// changed while its path did not.
func TestKeepRestartKeysFileContent(t *testing.T) {
	cur := defaultConfig()
	cur.Federation.DatabaseURLFile = "/run/secrets/db-url"
	next := cur
	before := map[string]fileSum{"/run/secrets/db-url": {1}}
	now := map[string]fileSum{"/run/secrets/db-url": {2}}
	got := keepRestartKeys(&next, cur, now, before)
	want := []string{"federation.database_url_file (content of /run/secrets/db-url)"}
	if !slices.Equal(got, want) {
		t.Errorf("keepRestartKeys() = %q, want %q", got, want)
	}
}

// startReloader starts an app in this process from the configuration at
// path (the legacy secret from the environment) and its reloader.
func startReloader(t *testing.T, path string) (*reloader, *app) {
	t.Helper()
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRETS=" + verifytest.Secret}
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg)
	rl, err := newReloader(path, env, cfg, a, zap.NewAtomicLevel(), a.reg)
	if err != nil {
		t.Fatal(err)
	}
	return rl, a
}

// TestReloadWatchWaitsOutEmptyFile: the watch takes a file whose content
// is the same at two ticks as settled, and an in-place rewrite leaves the
// file empty for a moment. An empty file, seen at two ticks (in two
// rewrites), is not reloaded; the content that follows is.
func TestReloadWatchWaitsOutEmptyFile(t *testing.T) {
	config := func(route string) string {
		return fmt.Sprintf(`verify: {legacy: {enabled: true, issuer: "https://auth.example.test"}}
routes:
  - {name: %s, path: /%s, access: public}
  - {name: default, path: /}
upstream: "builtin:echo"
reload: {watch_interval: 1h}
`, route, route)
	}
	path := writeFile(t, "c.yaml", config("a"))
	rl, _ := startReloader(t, path)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for tick := range 3 {
		if rl.settled() {
			t.Fatalf("tick %d: an empty configuration file is taken as settled", tick)
		}
	}
	if err := os.WriteFile(path, []byte(config("b")), 0o600); err != nil {
		t.Fatal(err)
	}
	if rl.settled() {
		t.Fatal("new content settled at its first tick")
	}
	if !rl.settled() {
		t.Fatal("new content, unchanged at the second tick, is not settled")
	}
}

// TestReloadConcurrent reloads an app in this process, by call and by its
// file watch at once, while requests, readiness checks and scrapes run:
// for the race detector, and no request may fail.
func TestReloadConcurrent(t *testing.T) {
	config := func(i int) string {
		return fmt.Sprintf(`verify: {legacy: {enabled: true, issuer: "https://auth.example.test"}}
routes:
  - {name: extra%d, path: /extra%d, access: public}
  - {name: default, path: /}
upstream: "builtin:echo"
log: {level: %s}
reload: {watch_interval: 100ms}
`, i, i, []string{"info", "debug"}[i%2])
	}
	path := writeFile(t, "c.yaml", config(0))
	rl, a := startReloader(t, path)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = rl.watch(ctx, make(chan os.Signal))
	}()
	tok := verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), verifytest.Claims("alice", time.Now()), nil)
	var failed atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r := httptest.NewRequest("GET", "http://svc/", nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				w := httptest.NewRecorder()
				a.handler.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			for _, p := range []string{"/metrics", "/readyz"} {
				a.admin.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://admin"+p, nil))
			}
		}
	}()
	for i := 1; i <= 10; i++ {
		// Replaced by a rename, as Kubernetes and most deploy tools do: the
		// watch runs at the same time, and a file rewritten in place is
		// empty for a moment, which two ticks could both see (the same
		// content twice: settled) during two different rewrites.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(config(i)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		rl.reload(ctx, "test")
	}
	cancel()
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed during the reloads", n)
	}
	if got := testutil.ToFloat64(rl.reloads.WithLabelValues("error")); got != 0 {
		t.Errorf("config_reloads_total{result=error} = %v, want 0", got)
	}
	if got := testutil.ToFloat64(rl.generation); got < 11 {
		t.Errorf("config_generation = %v, want at least 11", got)
	}
}

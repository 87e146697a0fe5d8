package main

import (
	"slices"
	"strings"
	"testing"
	"time"
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

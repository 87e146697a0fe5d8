package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/internal/secret"
)

func TestConfigValidate(t *testing.T) {
	one := []string{"127.0.0.1:6379"}
	tests := []struct {
		name     string
		give     func(c *Config)
		wantErrs []string
	}{
		{name: "defaults", give: func(c *Config) {}},
		{name: "single node", give: func(c *Config) { c.Redis.Addrs, c.Redis.DB, c.Redis.KeyPrefix = one, 1, "atma:auth-v2:" }},
		{name: "sentinel with db", give: func(c *Config) {
			c.Redis.Addrs, c.Redis.MasterName, c.Redis.DB = []string{"s1:26379", "s2:26379"}, "mymaster", 1
		}},
		{name: "cluster", give: func(c *Config) { c.Redis.Addrs = []string{"n1:6379", "n2:6379"} }},
		{name: "zeros that mean something", give: func(c *Config) {
			c.LocalMaxBytes, c.LocalMaxTTL = 0, 0
			c.Redis.Addrs, c.Redis.KeyPrefix, c.Redis.PoolSize, c.Redis.FailureBackoff, c.Redis.FailureBackoffMax = one, "", 0, 0, 0
		}},
		{
			name: "negative local settings",
			give: func(c *Config) { c.LocalMaxBytes, c.LocalMaxTTL, c.LoadTimeout = -1, -time.Second, -time.Second },
			wantErrs: []string{
				"local_max_bytes: -1 is outside 1048576..1099511627776 (1 MiB to 1 TiB; 0 = no in-process tier)",
				"local_max_ttl: must not be negative",
				"load_timeout: -1s is outside 1ns..5m0s",
			},
		},
		{
			name:     "zero load timeout",
			give:     func(c *Config) { c.LoadTimeout = 0 },
			wantErrs: []string{"load_timeout: 0s is outside 1ns..5m0s"},
		},
		{
			name:     "master_name without addrs",
			give:     func(c *Config) { c.Redis.MasterName = "mymaster" },
			wantErrs: []string{"redis.addrs: required with master_name or cluster"},
		},
		{
			name:     "bad address",
			give:     func(c *Config) { c.Redis.Addrs = []string{"127.0.0.1:6379", "redis"} },
			wantErrs: []string{`redis.addrs[1]: "redis" is not host:port`},
		},
		{
			name:     "db with cluster",
			give:     func(c *Config) { c.Redis.Addrs, c.Redis.DB = []string{"n1:6379", "n2:6379"}, 1 },
			wantErrs: []string{"redis.db: must be 0 with Redis Cluster (more than one address, or cluster, without master_name)"},
		},
		{
			name:     "db with cluster flag",
			give:     func(c *Config) { c.Redis.Addrs, c.Redis.Cluster, c.Redis.DB = one, true, 2 },
			wantErrs: []string{"redis.db: must be 0 with Redis Cluster (more than one address, or cluster, without master_name)"},
		},
		{
			name:     "cluster and sentinel",
			give:     func(c *Config) { c.Redis.Addrs, c.Redis.Cluster, c.Redis.MasterName = one, true, "m" },
			wantErrs: []string{"redis.cluster: cannot be combined with master_name"},
		},
		{
			name: "every redis field wrong",
			give: func(c *Config) {
				c.Redis = RedisConfig{
					Addrs: one, DB: -1, Password: "p", PasswordFile: "/nonexistent/authgate-redis-password",
					KeyPrefix: "auth gate:", DialTimeout: -1, ReadTimeout: 2 * time.Minute, WriteTimeout: 0,
					PoolSize: -1, FailureBackoff: -1, FailureBackoffMax: time.Hour,
				}
			},
			wantErrs: []string{
				"redis.db: must not be negative",
				"redis.password: set password or password_file, not both",
				"redis.key_prefix: must not contain whitespace",
				"redis.dial_timeout: -1ns is outside 1ns..1m0s",
				"redis.read_timeout: 2m0s is outside 1ns..1m0s",
				"redis.write_timeout: 0s is outside 1ns..1m0s",
				"redis.pool_size: -1 is outside 0..10000 (0 = go-redis's default, 10 per CPU)",
				"redis.failure_backoff: -1ns is outside 0..10m0s (0 = no back-off)",
				"redis.failure_backoff_max: 1h0m0s is outside 0..10m0s",
			},
		},
		{
			name: "backoff max below backoff",
			give: func(c *Config) {
				c.Redis.Addrs, c.Redis.FailureBackoff, c.Redis.FailureBackoffMax = one, 5*time.Second, 2*time.Second
			},
			wantErrs: []string{"redis.failure_backoff_max: must not be less than failure_backoff"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, err := range configerr.List(configWith(tt.give).Validate()) {
				got = append(got, err.Error())
			}
			if !slices.Equal(got, tt.wantErrs) {
				t.Errorf("Validate() = %q, want %q", got, tt.wantErrs)
			}
		})
	}
}

func TestRedisConfigRedactsPassword(t *testing.T) {
	const secret = "hunter2-redis-secret"
	cfg := DefaultConfig()
	cfg.Redis.Addrs, cfg.Redis.Password = []string{"127.0.0.1:6379"}, secret
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(format, cfg); strings.Contains(got, secret) {
			t.Errorf("Sprintf(%q, cfg) = %s, reveals the password", format, got)
		}
		if got := fmt.Sprintf(format, cfg.Redis); strings.Contains(got, secret) {
			t.Errorf("Sprintf(%q, cfg.Redis) = %s, reveals the password", format, got)
		}
	}
}

func TestRedisPasswordFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		give    string
		want    string
		wantErr string
	}{
		{name: "trailing newline", give: write("nl", "s3cret\n"), want: "s3cret"},
		{name: "crlf", give: write("crlf", "s3cret\r\n"), want: "s3cret"},
		{name: "empty", give: write("empty", "\n"), wantErr: "password_file: " + filepath.Join(dir, "empty") + " is empty"},
		{name: "too long", give: write("long", strings.Repeat("x", secret.MaxFileBytes+1)), wantErr: fmt.Sprintf("password_file: %s is more than %d bytes", filepath.Join(dir, "long"), secret.MaxFileBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RedisConfig{PasswordFile: tt.give}.password()
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if got != tt.want || gotErr != tt.wantErr {
				t.Errorf("password() = %q, %q, want %q, %q", got, gotErr, tt.want, tt.wantErr)
			}
		})
	}
}

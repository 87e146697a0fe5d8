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
)

func TestConfigValidate(t *testing.T) {
	one := []string{"127.0.0.1:6379"}
	tests := []struct {
		name     string
		give     Config
		wantErrs []string
	}{
		{name: "zero value", give: Config{}},
		{name: "single node", give: Config{Redis: RedisConfig{Addrs: one, DB: 1, KeyPrefix: "atma:auth-v2:"}}},
		{name: "sentinel with db", give: Config{Redis: RedisConfig{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", DB: 1}}},
		{name: "cluster", give: Config{Redis: RedisConfig{Addrs: []string{"n1:6379", "n2:6379"}}}},
		{
			name: "negative local settings",
			give: Config{LocalEntries: -1, LocalMaxTTL: -time.Second, LoadTimeout: -time.Second},
			wantErrs: []string{
				"local_entries: must be between 0 (default 100000) and 100000000",
				"local_max_ttl: must not be negative",
				"load_timeout: must be between 0 (default 10s) and 5m0s",
			},
		},
		{
			name:     "master_name without addrs",
			give:     Config{Redis: RedisConfig{MasterName: "mymaster"}},
			wantErrs: []string{"redis.addrs: required with master_name or cluster"},
		},
		{
			name:     "bad address",
			give:     Config{Redis: RedisConfig{Addrs: []string{"127.0.0.1:6379", "redis"}}},
			wantErrs: []string{`redis.addrs[1]: "redis" is not host:port`},
		},
		{
			name:     "db with cluster",
			give:     Config{Redis: RedisConfig{Addrs: []string{"n1:6379", "n2:6379"}, DB: 1}},
			wantErrs: []string{"redis.db: must be 0 with Redis Cluster (more than one address, or cluster, without master_name)"},
		},
		{
			name:     "db with cluster flag",
			give:     Config{Redis: RedisConfig{Addrs: one, Cluster: true, DB: 2}},
			wantErrs: []string{"redis.db: must be 0 with Redis Cluster (more than one address, or cluster, without master_name)"},
		},
		{
			name:     "cluster and sentinel",
			give:     Config{Redis: RedisConfig{Addrs: one, Cluster: true, MasterName: "m"}},
			wantErrs: []string{"redis.cluster: cannot be combined with master_name"},
		},
		{
			name: "every redis field wrong",
			give: Config{Redis: RedisConfig{
				Addrs: one, DB: -1, Password: "p", PasswordFile: "/nonexistent/authgate-redis-password",
				KeyPrefix: "auth gate:", DialTimeout: -1, ReadTimeout: 2 * time.Minute, WriteTimeout: -1,
				PoolSize: -1, FailureBackoff: -1, FailureBackoffMax: time.Hour,
			}},
			wantErrs: []string{
				"redis.db: must not be negative",
				"redis.password: set password or password_file, not both",
				"redis.password_file: open /nonexistent/authgate-redis-password: no such file or directory",
				"redis.key_prefix: must not contain whitespace",
				"redis.dial_timeout: must be between 0 (default) and 1m0s",
				"redis.read_timeout: must be between 0 (default) and 1m0s",
				"redis.write_timeout: must be between 0 (default) and 1m0s",
				"redis.pool_size: must be between 0 (default) and 10000",
				"redis.failure_backoff: must be between 0 (default 1s) and 10m0s",
				"redis.failure_backoff_max: must be between 0 (default 30s) and 10m0s",
			},
		},
		{
			name:     "backoff max below backoff",
			give:     Config{Redis: RedisConfig{Addrs: one, FailureBackoff: 5 * time.Second, FailureBackoffMax: 2 * time.Second}},
			wantErrs: []string{"redis.failure_backoff_max: must not be less than failure_backoff"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, err := range configerr.List(tt.give.Validate()) {
				got = append(got, err.Error())
			}
			if !slices.Equal(got, tt.wantErrs) {
				t.Errorf("Validate() = %q, want %q", got, tt.wantErrs)
			}
		})
	}
}

func TestRedisConfigDefaults(t *testing.T) {
	got := RedisConfig{FailureBackoff: time.Minute}.withDefaults()
	want := RedisConfig{
		KeyPrefix: "authgate:", DialTimeout: time.Second, ReadTimeout: 500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond, FailureBackoff: time.Minute, FailureBackoffMax: time.Minute,
	}
	if got.String() != want.String() {
		t.Errorf("withDefaults() = %v, want %v", got, want)
	}
}

func TestRedisConfigRedactsPassword(t *testing.T) {
	const secret = "hunter2-redis-secret"
	cfg := Config{Redis: RedisConfig{Addrs: []string{"127.0.0.1:6379"}, Password: secret}}
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
		{name: "empty", give: write("empty", "\n"), wantErr: "password_file: is empty"},
		{name: "too long", give: write("long", strings.Repeat("x", 5000)), wantErr: "password_file: more than 4096 bytes"},
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

package main

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/configs"
	"github.com/authgate/authgate/internal/secret"
	usagestats "github.com/authgate/authgate/internal/usage"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimalConfig = `
routes:
  - name: default
    path: /
verify:
  legacy:
    enabled: true
    issuer: https://auth.example.test
`

func TestLoadConfigEnvOverrides(t *testing.T) {
	path := writeFile(t, "c.yaml", minimalConfig)
	secretFile := writeFile(t, "secret", "file-secret-0123456789abcdef0123456789-0123456789\n")
	env := []string{
		"AUTHGATE_UPSTREAM=http://127.0.0.1:3000",
		"AUTHGATE_SERVER_PUBLIC_ADDR=127.0.0.1:18080",
		"AUTHGATE_SERVER_SHUTDOWN_GRACE=3s",
		"AUTHGATE_SERVER_ADMIN_PPROF=true",
		"AUTHGATE_TRUSTED_PROXIES=10.0.0.0/8, 127.0.0.1/32",
		"AUTHGATE_VERIFY_LEGACY_SECRETS=env-secret-0123456789abcdef0123456789-0123456789",
		"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secretFile,
		"AUTHGATE_VERIFY_LEGACY_ALGORITHMS=[HS256, HS384]",
		"AUTHGATE_ROUTES=[{name: all, path: /, access: public}]",
		"AUTHGATE_AUTH_API_WEB_API_KEY=env-web-api-key",
		"AUTHGATE_AUTH_API_RATE_LIMIT_PER_EMAIL_RATE=0.5",
		"AUTHGATE_AUTH_API_LEGACY_PASSWORDS_KEEP_HASH=true",
		"OTHER_VARIABLE=ignored",
	}
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"upstream", cfg.Proxy.Upstream, "http://127.0.0.1:3000"},
		{"server.public.addr", cfg.Server.Public.Addr, "127.0.0.1:18080"},
		{"server.shutdown_grace", cfg.Server.ShutdownGrace, 3 * time.Second},
		{"server.admin.pprof", cfg.Server.Admin.Pprof, true},
		{"trusted_proxies", cfg.Proxy.TrustedProxies, []string{"10.0.0.0/8", "127.0.0.1/32"}},
		{"verify.legacy.secrets", secret.Values(cfg.Verify.Legacy.Secrets), []string{"env-secret-0123456789abcdef0123456789-0123456789"}},
		{"verify.legacy.secret_files", cfg.Verify.Legacy.SecretFiles, []string{secretFile}},
		{"verify.legacy.algorithms", cfg.Verify.Legacy.Algorithms, []string{"HS256", "HS384"}},
		{"routes[0].access", string(cfg.Proxy.Routes[0].Access), "public"},
		{"server.admin.addr (default)", cfg.Server.Admin.Addr, ":9090"},
		{"verify.legacy.issuer (file)", cfg.Verify.Legacy.Issuer, "https://auth.example.test"},
		{"auth_api.web_api_key", cfg.AuthAPI.WebAPIKey.Value(), "env-web-api-key"},
		{"auth_api.rate_limit.per_email.rate", cfg.AuthAPI.RateLimit.PerEmail.Rate, 0.5},
		{"auth_api.legacy_passwords.keep_hash", cfg.AuthAPI.LegacyPasswords.KeepHash, true},
		{"auth_api.prefix (default)", cfg.AuthAPI.Prefix, "/v1/auth"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestLoadConfigProblems(t *testing.T) {
	tests := []struct {
		name     string
		giveYAML string
		giveEnv  []string
		want     []string
		wantNot  []string
	}{
		{
			name:     "unknown key in file",
			giveYAML: minimalConfig + "upstrem: http://x\n",
			want:     []string{"upstrem"},
		},
		{
			name:     "removed key in file",
			giveYAML: minimalConfig + "cache:\n  local_entries: 1000\n",
			want:     []string{"cache.local_entries: removed", "cache.local_max_bytes"},
			wantNot:  []string{"not found in type"},
		},
		{
			name:     "removed key in the environment",
			giveYAML: minimalConfig,
			giveEnv:  []string{"AUTHGATE_CACHE_LOCAL_ENTRIES=1000"},
			want:     []string{"AUTHGATE_CACHE_LOCAL_ENTRIES (cache.local_entries): removed", "cache.local_max_bytes"},
			wantNot:  []string{"no such configuration key"},
		},
		{
			name:     "ignored key in a flow mapping",
			giveYAML: minimalConfig + "usage: {enabled: true, max_pending: 5}\n",
			want:     []string{"usage.max_pending: no longer has an effect", "remove it"},
			wantNot:  []string{"not found in type"},
		},
		{
			name:     "ignored key keeps the lines of later problems",
			giveYAML: "usage:\n  max_pending: 100000\nserver:\n  shutdown_grace: soon\n" + minimalConfig,
			want:     []string{"line 4:", "soon"},
			wantNot:  []string{"max_pending"},
		},
		{
			name:     "wrong type in file",
			giveYAML: minimalConfig + "server:\n  shutdown_grace: soon\n",
			want:     []string{"soon"},
		},
		{
			name:     "every problem at once, with key paths",
			giveYAML: "log:\n  level: loud\nserver:\n  public:\n    max_header_bytes: 10\nroutes:\n  - name: x\n    path: nope\nverify:\n  legacy:\n    enabled: true\n    secrets: [abc123zz]\n    algorithms: [XS256, HS256]\n",
			want: []string{
				"log.level:", "server.public.max_header_bytes:", "routes[0].path:",
				"verify.legacy.secrets[0]:", "verify.legacy.algorithms[0]:",
			},
			wantNot: []string{"abc123zz"},
		},
		{
			name:     "unknown and unparsable environment variables",
			giveYAML: minimalConfig,
			giveEnv:  []string{"AUTHGATE_UPSTREAMS=http://x", "AUTHGATE_SERVER_PUBLIC_READ_TIMEOUT=fast", "AUTHGATE_VERIFY_LEGACY_SECRETS=s3cr3t-value"},
			want:     []string{"AUTHGATE_UPSTREAMS: no such configuration key", "AUTHGATE_SERVER_PUBLIC_READ_TIMEOUT (server.public.read_timeout)", "verify.legacy.secrets[0]:"},
			wantNot:  []string{"s3cr3t-value", "fast"},
		},
		{
			name:     "tracing sample ratio out of range",
			giveYAML: minimalConfig + "tracing:\n  enabled: true\n  service_name: \"\"\n",
			giveEnv:  []string{"AUTHGATE_VERIFY_LEGACY_SECRETS=env-secret-0123456789abcdef0123456789-0123456789", "AUTHGATE_TRACING_SAMPLE_RATIO=1.5"},
			want:     []string{"tracing.sample_ratio: 1.5 is outside 0..1", "tracing.service_name: must be set"},
		},
		{
			name:     "auth api without what it needs",
			giveYAML: minimalConfig + "auth_api:\n  enabled: true\n  prefix: /auth/v1\n  legacy_passwords:\n    enabled: true\n    column: \"pw; drop\"\n",
			giveEnv:  []string{"AUTHGATE_VERIFY_LEGACY_SECRETS=env-secret-0123456789abcdef0123456789-0123456789"},
			want: []string{
				"auth_api.enabled: needs verify.firebase.enabled", "auth_api.enabled: needs federation.enabled",
				`auth_api.prefix: "/auth/v1" overlaps forward_auth.path`, "auth_api.web_api_key: required",
				"auth_api.legacy_passwords.column:",
			},
		},
		{
			name: "auth api without revocation",
			giveYAML: minimalConfig + "  firebase:\n    enabled: true\n    project_id: demo-authgate\n" +
				"federation:\n  enabled: true\n  database_url: postgres://db/x\nauth_api:\n  enabled: true\n",
			giveEnv: []string{"AUTHGATE_VERIFY_LEGACY_SECRETS=env-secret-0123456789abcdef0123456789-0123456789", "AUTHGATE_AUTH_API_WEB_API_KEY=AIza-not-to-be-shown", "AUTHGATE_AUTH_API_TIMEOUT=2h"},
			want:    []string{"auth_api.enabled: needs verify.firebase.revocation.enabled", "auth_api.timeout:"},
			wantNot: []string{"AIza-not-to-be-shown", "needs federation.enabled", "needs verify.firebase.enabled"},
		},
		{
			name:     "ext_authz_grpc listener",
			giveYAML: minimalConfig + "server:\n  admin:\n    addr: \":9191\"\next_authz_grpc:\n  addr: \"127.0.0.1:9191\"\n  max_recv_msg_size: 100\n  max_concurrent_streams: 0\n  timeout: -1s\n",
			giveEnv:  []string{"AUTHGATE_VERIFY_LEGACY_SECRETS=env-secret-0123456789abcdef0123456789-0123456789"},
			want: []string{
				`ext_authz_grpc.addr: "127.0.0.1:9191" must differ from server.admin.addr`,
				"ext_authz_grpc.max_recv_msg_size: 100 is outside 4096..67108864",
				"ext_authz_grpc.max_concurrent_streams: 0 is outside 1..1048576",
				"ext_authz_grpc.timeout: -1s must be positive",
			},
			wantNot: []string{"server.public.addr"},
		},
		{
			name:     "ext_authz_grpc address without a port",
			giveYAML: minimalConfig + "ext_authz_grpc:\n  addr: localhost\n",
			giveEnv:  []string{"AUTHGATE_VERIFY_LEGACY_SECRETS=env-secret-0123456789abcdef0123456789-0123456789"},
			want:     []string{`ext_authz_grpc.addr: "localhost" is not host:port`},
		},
		{
			name:     "no issuer",
			giveYAML: "routes:\n  - name: d\n    path: /\n",
			want:     []string{"verify.legacy.enabled: no issuer is enabled"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(writeFile(t, "c.yaml", tt.giveYAML), tt.giveEnv)
			if err == nil {
				t.Fatal("loadConfig = nil error, want problems")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q reveals %q", err, w)
				}
			}
		})
	}
}

// Every example in configs/ stays valid once its secret file exists.
func TestExampleConfigsAreValid(t *testing.T) {
	secret := writeFile(t, "secret", "example-secret-0123456789abcdef0123456789")
	dbURL := writeFile(t, "database-url", "postgres://authgate@db:5432/platform?sslmode=disable\n")
	err := fs.WalkDir(configs.Files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		t.Run(name, func(t *testing.T) {
			b, err := fs.ReadFile(configs.Files, name)
			if err != nil {
				t.Fatal(err)
			}
			path := writeFile(t, name, string(b))
			env := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret, "AUTHGATE_FEDERATION_DATABASE_URL_FILE=" + dbURL}
			if _, err := loadConfig(path, env); err != nil {
				t.Errorf("configs/%s: %v", name, err)
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// No two keys may share an environment variable name.
func TestEnvKeysAreUnique(t *testing.T) {
	cfg := defaultConfig()
	seen := map[string]string{}
	for _, k := range envKeys(&cfg) {
		if prev, ok := seen[k.name]; ok {
			t.Errorf("%s names both %s and %s", k.name, prev, k.path)
		}
		seen[k.name] = k.path
	}
	if _, ok := seen["AUTHGATE_VERIFY_LEGACY_SECRETS"]; !ok {
		t.Error("AUTHGATE_VERIFY_LEGACY_SECRETS is not a key")
	}
}

// The Admin SDK skips signature checks against the Auth Emulator, so the
// variable that points it there must not be set outside emulator mode.
func TestServeRefusesEmulatorHostOutsideEmulatorMode(t *testing.T) {
	secret := writeFile(t, "secret", "example-secret-0123456789abcdef0123456789")
	path := writeFile(t, "c.yaml", minimalConfig)
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret, "FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:9099",
		"AUTHGATE_SERVER_PUBLIC_ADDR=127.0.0.1:0", "AUTHGATE_SERVER_ADMIN_ADDR=127.0.0.1:0"}
	var stderr strings.Builder
	err := run(t.Context(), []string{"serve", "--config", path}, env, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "FIREBASE_AUTH_EMULATOR_HOST") {
		t.Fatalf("serve with the emulator variable = %v, want a refusal naming it", err)
	}
}

// usage.max_pending no longer has an effect: a file or variable that still
// sets it loads as if it did not, the other keys of its section included,
// and serve warns once, naming the key and where it was set.
func TestIgnoredKeyStillStarts(t *testing.T) {
	tests := []struct {
		name      string
		giveYAML  string
		giveEnv   []string
		wantWhere string
		wantUsage usagestats.Config
	}{
		{
			name:      "in the file, beside other keys",
			giveYAML:  minimalConfig + "usage:\n  enabled: false\n  max_pending: 100000 # old\n  flush_interval: 5s\n",
			wantWhere: "line 11",
			wantUsage: usagestats.Config{Enabled: false, FlushInterval: 5 * time.Second},
		},
		{
			name:      "in the file, alone in its section",
			giveYAML:  minimalConfig + "usage:\r\n  max_pending: 3\r\n",
			wantWhere: "line 10",
			wantUsage: usagestats.DefaultConfig(),
		},
		{
			name:      "in the environment",
			giveYAML:  minimalConfig,
			giveEnv:   []string{"AUTHGATE_USAGE_MAX_PENDING=5"},
			wantWhere: "AUTHGATE_USAGE_MAX_PENDING",
			wantUsage: usagestats.DefaultConfig(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append([]string{"AUTHGATE_VERIFY_LEGACY_SECRETS=env-secret-0123456789abcdef0123456789-0123456789"}, tt.giveEnv...)
			cfg, err := loadConfig(writeFile(t, "c.yaml", tt.giveYAML), env)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if cfg.Usage != tt.wantUsage {
				t.Errorf("usage = %+v, want %+v", cfg.Usage, tt.wantUsage)
			}
			want := []ignoredKey{{path: "usage.max_pending", where: tt.wantWhere, why: ignoredKeys["usage.max_pending"]}}
			if !reflect.DeepEqual(cfg.ignored, want) {
				t.Errorf("ignored = %+v, want %+v", cfg.ignored, want)
			}
		})
	}
}

// serve logs the ignored key once, at start-up, and starts.
func TestServeWarnsOfIgnoredKey(t *testing.T) {
	secret := writeFile(t, "secret", "example-secret-0123456789abcdef0123456789")
	path := writeFile(t, "c.yaml", minimalConfig+"usage:\n  max_pending: 100000\n")
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret, "AUTHGATE_UPSTREAM=http://127.0.0.1:1",
		"AUTHGATE_SERVER_PUBLIC_ADDR=127.0.0.1:0", "AUTHGATE_SERVER_ADMIN_ADDR=127.0.0.1:0"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path}, env, io.Discard, out) }()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(out.String(), `"listening"`) {
		select {
		case err := <-done:
			t.Fatalf("serve ended before listening: %v\n%s", err, out)
		case <-deadline:
			t.Fatalf("serve did not log \"listening\" within 10s\n%s", out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	logs := out.String()
	if n := strings.Count(logs, "configuration key ignored"); n != 1 || !strings.Contains(logs, `"key":"usage.max_pending"`) {
		t.Errorf("serve logged %d warnings of usage.max_pending, want 1:\n%s", n, logs)
	}
}

// lockedBuffer is a bytes.Buffer that serve's logger and the test can use
// at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

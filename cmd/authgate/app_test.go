package main

import (
	"encoding/pem"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/authgate/authgate/internal/secret"
	"go.uber.org/zap/zaptest"
	"golang.org/x/oauth2/google"
)

// withoutGoogleCredentials clears what the Firebase Admin SDK would find
// credentials in (GOOGLE_APPLICATION_CREDENTIALS, the gcloud file under
// HOME) and the Auth Emulator, which needs none.
func withoutGoogleCredentials(t *testing.T) {
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("FIREBASE_AUTH_EMULATOR_HOST", "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("APPDATA", t.TempDir())
}

// skipWithMetadataServer skips a test of missing credentials where a
// metadata server (Google Cloud) provides them.
func skipWithMetadataServer(t *testing.T) {
	t.Helper()
	if _, err := google.FindDefaultCredentials(t.Context()); err == nil {
		t.Skip("application default credentials found (a metadata server?)")
	}
}

// appFailureConfig is a configuration that newApp builds every component
// of but the Firebase Admin clients: Redis, tracing, a legacy verifier,
// federation (none of which connects while building) and the proxy.
func appFailureConfig(t *testing.T) Config {
	t.Helper()
	cfg := defaultConfig()
	if err := decodeYAML([]byte(minimalConfig), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Verify.Legacy.Secrets = []secret.Secret{"app-test-secret-0123456789abcdef0123456789"}
	cfg.Cache.Redis.Addrs = []string{"127.0.0.1:6379"}
	cfg.Tracing.Enabled = true
	cfg.Federation.Enabled = true
	cfg.Federation.DatabaseURL = "postgres://postgres@127.0.0.1:1/none?sslmode=disable"
	cfg.Verify.Firebase.ProjectID = "demo-authgate"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("base configuration: %v", err)
	}
	return cfg
}

// TestNewAppFailures breaks each component in turn: newApp must return one
// line naming the component, the key and the cause, and close, newest
// first, exactly what it had built before.
func TestNewAppFailures(t *testing.T) {
	withoutGoogleCredentials(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	notJSON := writeFile(t, "not-json", "not json\n")
	tls := httptest.NewTLSServer(nil)
	tls.Close()
	cert := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tls.Certificate().Raw})))
	built := []string{"federation", "verifier", "tracing", "cache", "redis"}

	tests := []struct {
		name       string
		give       func(t *testing.T, cfg *Config)
		wantErr    []string
		wantClosed []string
	}{
		{
			name:    "redis password file missing",
			give:    func(t *testing.T, cfg *Config) { cfg.Cache.Redis.PasswordFile = missing },
			wantErr: []string{"redis: cache.redis.password_file: open " + missing + ": no such file"},
		},
		{
			name:       "in-process tier budget below its range",
			give:       func(t *testing.T, cfg *Config) { cfg.Cache.LocalMaxBytes = 64 },
			wantErr:    []string{"cache: cache.local_max_bytes: 64 is outside 1048576..1099511627776"},
			wantClosed: []string{"redis"},
		},
		{
			name: "tracing exporter refuses its variables",
			give: func(t *testing.T, cfg *Config) {
				// An http:// endpoint with a CA for TLS.
				t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", cert)
			},
			wantErr:    []string{"tracing: otlp exporter (OTEL_EXPORTER_OTLP_* variables): insecure HTTP endpoint cannot use TLS"},
			wantClosed: []string{"cache", "redis"},
		},
		{
			name: "firebase admin credentials missing for revocation",
			give: func(t *testing.T, cfg *Config) {
				skipWithMetadataServer(t)
				cfg.Verify.Firebase.Enabled, cfg.Verify.Firebase.Revocation.Enabled = true, true
			},
			wantErr: []string{
				"firebase admin for revocation checks (verify.firebase.revocation.enabled): no Google credentials found: ",
				"set verify.firebase.revocation.credentials_file to a service account key file, or GOOGLE_APPLICATION_CREDENTIALS,",
				"the Auth Emulator (verify.firebase.emulator: true and FIREBASE_AUTH_EMULATOR_HOST)",
			},
			wantClosed: []string{"tracing", "cache", "redis"},
		},
		{
			name: "firebase admin credentials file not JSON",
			give: func(t *testing.T, cfg *Config) {
				cfg.Verify.Firebase.Enabled, cfg.Verify.Firebase.Revocation.Enabled = true, true
				cfg.Verify.Firebase.Revocation.CredentialsFile = notJSON
			},
			wantErr:    []string{"firebase admin for revocation checks (verify.firebase.revocation.enabled): verify.firebase.revocation.credentials_file: credentials file " + notJSON + ": not JSON"},
			wantClosed: []string{"tracing", "cache", "redis"},
		},
		{
			name: "firebase admin credentials from an unreadable GOOGLE_APPLICATION_CREDENTIALS",
			give: func(t *testing.T, cfg *Config) {
				t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", missing)
				cfg.Verify.Firebase.Enabled, cfg.Verify.Firebase.Revocation.Enabled = true, true
			},
			wantErr:    []string{"firebase admin for revocation checks (verify.firebase.revocation.enabled): GOOGLE_APPLICATION_CREDENTIALS: credentials file " + missing + ": no such file"},
			wantClosed: []string{"tracing", "cache", "redis"},
		},
		{
			name: "verifier secret file missing",
			give: func(t *testing.T, cfg *Config) {
				cfg.Verify.Legacy.Secrets, cfg.Verify.Legacy.SecretFiles = nil, []string{missing}
			},
			wantErr:    []string{"verifier: verify.legacy.secret_files[0]: open ", "no such file"},
			wantClosed: []string{"tracing", "cache", "redis"},
		},
		{
			name: "federation database url file missing",
			give: func(t *testing.T, cfg *Config) {
				cfg.Federation.DatabaseURL, cfg.Federation.DatabaseURLFile = "", missing
			},
			wantErr:    []string{"federation: federation.database_url_file: "},
			wantClosed: []string{"verifier", "tracing", "cache", "redis"},
		},
		{
			name: "firebase admin credentials missing for the federation worker",
			give: func(t *testing.T, cfg *Config) {
				skipWithMetadataServer(t)
				cfg.Verify.Firebase.Enabled, cfg.Federation.Worker.Enabled = true, true
			},
			wantErr: []string{
				"firebase admin for the federation worker (federation.worker.enabled): no Google credentials found: ",
				"set federation.firebase_credentials_file or verify.firebase.revocation.credentials_file to a service account key file",
			},
			wantClosed: built,
		},
		{
			name: "firebase admin credentials missing for the admin link endpoint",
			give: func(t *testing.T, cfg *Config) {
				skipWithMetadataServer(t)
				cfg.Verify.Firebase.Enabled = true
				cfg.Server.Admin.APISecret = "admin-api-secret-0123456789abcdef"
			},
			wantErr:    []string{"firebase admin for the admin API's link and retry endpoints (server.admin.api_secret): no Google credentials found: "},
			wantClosed: built,
		},
		{
			name:       "admin api secret file missing",
			give:       func(t *testing.T, cfg *Config) { cfg.Server.Admin.APISecretFile = missing },
			wantErr:    []string{"admin api: server.admin.api_secret_file: open " + missing + ": no such file"},
			wantClosed: built,
		},
		{
			name: "firebase admin credentials missing for the auth api",
			give: func(t *testing.T, cfg *Config) {
				skipWithMetadataServer(t)
				cfg.Verify.Firebase.Enabled = true
				cfg.AuthAPI.Enabled, cfg.AuthAPI.WebAPIKey = true, "web-api-key"
			},
			wantErr:    []string{"firebase admin for the auth API (auth_api.enabled): no Google credentials found: set federation.firebase_credentials_file or verify.firebase.revocation.credentials_file"},
			wantClosed: built,
		},
		{
			name: "auth api key file missing",
			give: func(t *testing.T, cfg *Config) {
				cfg.Verify.Firebase.Enabled = true
				cfg.AuthAPI.Enabled, cfg.AuthAPI.WebAPIKeyFile = true, missing
			},
			wantErr:    []string{"auth api: auth_api.web_api_key_file: open " + missing + ": no such file"},
			wantClosed: built,
		},
		{
			name:       "proxy upstream bad",
			give:       func(t *testing.T, cfg *Config) { cfg.Proxy.Upstream = "ftp://upstream.example.test" },
			wantErr:    []string{"proxy: upstream: "},
			wantClosed: built,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := appFailureConfig(t)
			tt.give(t, &cfg)
			var closed []string
			a, err := newApp(t.Context(), cfg, zaptest.NewLogger(t), withCloseHook(func(c string) { closed = append(closed, c) }))
			if err == nil {
				a.close()
				t.Fatal("newApp succeeded, want an error")
			}
			msg := err.Error()
			t.Logf("newApp: %s", msg)
			for _, want := range tt.wantErr {
				if !strings.Contains(msg, want) {
					t.Errorf("newApp error = %q, want it to contain %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("newApp error is more than one line: %q", msg)
			}
			if !slices.Equal(closed, tt.wantClosed) {
				t.Errorf("newApp closed %q, want %q", closed, tt.wantClosed)
			}
		})
	}
}

// TestNewAppCloses checks that an app built without error closes every
// component it opened, newest first.
func TestNewAppCloses(t *testing.T) {
	withoutGoogleCredentials(t)
	cfg := appFailureConfig(t)
	var closed []string
	a, err := newApp(t.Context(), cfg, zaptest.NewLogger(t), withCloseHook(func(c string) { closed = append(closed, c) }))
	if err != nil {
		t.Fatal(err)
	}
	a.close()
	if want := []string{"federation", "verifier", "tracing", "cache", "redis"}; !slices.Equal(closed, want) {
		t.Errorf("close closed %q, want %q", closed, want)
	}
}

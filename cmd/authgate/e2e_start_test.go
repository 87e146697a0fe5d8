package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/cache"
)

// noCredentialsEnv is e2eEnv without anything the Firebase Admin SDK finds
// credentials in: no GOOGLE_APPLICATION_CREDENTIALS, a HOME without a
// gcloud directory, and no OTEL_* variables, plus extra.
func noCredentialsEnv(t *testing.T, extra ...string) []string {
	var env []string
	for _, kv := range e2eEnv() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "GOOGLE_APPLICATION_CREDENTIALS" && k != "HOME" && k != "APPDATA" && !strings.HasPrefix(k, "OTEL_") {
			env = append(env, kv)
		}
	}
	return append(env, append([]string{"HOME=" + t.TempDir()}, extra...)...)
}

// runAuthgate runs the binary with args to its end and returns its exit
// code, stdout and stderr.
func runAuthgate(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, authgateBinary(t), args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// startFailureConfig is a configuration that passes check-config, with
// extra YAML appended under verify:.
const startFailureConfig = `
server:
  public: {addr: "127.0.0.1:0"}
  admin: {addr: "127.0.0.1:0"}
upstream: "http://127.0.0.1:1"
routes:
  - {name: all, path: /, access: public}
verify:
  legacy:
    enabled: true
    issuer: https://auth.example.test
    secrets: [start-test-secret-0123456789abcdef0123456789]
`

// TestServeStartFailure starts the binary with a dependency broken in ways
// that check-config cannot see: it must exit 1 with one line on stderr
// naming the component and the cause, never a panic.
func TestServeStartFailure(t *testing.T) {
	authgateBinary(t)
	tls := httptest.NewTLSServer(nil)
	tls.Close()
	cert := filepath.Join(t.TempDir(), "ca.pem")
	e2eWriteFile(t, cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tls.Certificate().Raw})))
	firebase := `  firebase:
    enabled: true
    project_id: demo-authgate
`

	tests := []struct {
		name     string
		giveYAML string
		giveEnv  []string
		wantLine []string
	}{
		{
			name:     "tracing exporter",
			giveYAML: "tracing: {enabled: true}\n",
			giveEnv:  []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_CERTIFICATE=" + cert},
			wantLine: []string{"authgate: tracing: otlp exporter (OTEL_EXPORTER_OTLP_* variables): insecure HTTP endpoint cannot use TLS"},
		},
		{
			name:     "firebase admin credentials for revocation",
			giveYAML: firebase + "    revocation: {enabled: true}\n",
			wantLine: []string{
				"authgate: firebase admin for revocation checks (verify.firebase.revocation.enabled): no Google credentials found: ",
				"set verify.firebase.revocation.credentials_file to a service account key file, or GOOGLE_APPLICATION_CREDENTIALS",
				"Auth Emulator",
			},
		},
		{
			name:     "firebase admin credentials for the federation worker",
			giveYAML: firebase + "federation:\n  enabled: true\n  database_url: postgres://postgres@127.0.0.1:1/none\n  worker: {enabled: true}\n",
			wantLine: []string{
				"authgate: firebase admin for the federation worker (federation.worker.enabled): no Google credentials found: ",
				"set federation.firebase_credentials_file or verify.firebase.revocation.credentials_file",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			skipWithMetadataServer(t)
			path := filepath.Join(t.TempDir(), "authgate.yaml")
			e2eWriteFile(t, path, startFailureConfig+tt.giveYAML)
			env := noCredentialsEnv(t, tt.giveEnv...)
			if code, _, stderr := runAuthgate(t, env, "check-config", "--config", path); code != 0 {
				t.Fatalf("check-config exit code %d, want 0\n%s", code, stderr)
			}
			code, stdout, stderr := runAuthgate(t, env, "serve", "--config", path)
			if code != 1 {
				t.Errorf("serve exit code %d, want 1", code)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 || stdout != "" {
				t.Errorf("serve wrote %d lines to stderr and %q to stdout, want one line on stderr:\n%s", len(lines), stdout, stderr)
			}
			for _, want := range tt.wantLine {
				if !strings.Contains(lines[len(lines)-1], want) {
					t.Errorf("serve's last line does not contain %q:\n%s", want, stderr)
				}
			}
		})
	}
}

// TestCheckConfigFirebaseCredentials runs check-config on configurations
// that need Firebase Admin credentials: a named file that cannot be used is
// a problem (exit 2); none anywhere is a warning only, as a metadata server
// may provide them at serve.
func TestCheckConfigFirebaseCredentials(t *testing.T) {
	authgateBinary(t)
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "not-json")
	e2eWriteFile(t, notJSON, "not json\n")
	noType := filepath.Join(dir, "no-type.json")
	e2eWriteFile(t, noType, "{}\n")
	key := filepath.Join(dir, "key.json")
	e2eWriteFile(t, key, `{"type": "service_account"}`+"\n")
	gcloudHome := t.TempDir()
	if err := os.MkdirAll(filepath.Join(gcloudHome, ".config", "gcloud"), 0o700); err != nil {
		t.Fatal(err)
	}
	e2eWriteFile(t, filepath.Join(gcloudHome, ".config", "gcloud", "application_default_credentials.json"), `{"type": "authorized_user"}`)
	revocation := `  firebase:
    enabled: true
    project_id: demo-authgate
    revocation: {enabled: true}
`
	worker := revocation + "federation:\n  enabled: true\n  database_url: postgres://postgres@127.0.0.1:1/none\n  worker: {enabled: true}\n"

	tests := []struct {
		name       string
		giveYAML   string
		giveEnv    []string
		wantCode   int
		wantStderr []string
		wantNot    []string
	}{
		{
			name:     "none anywhere is a warning",
			giveYAML: revocation,
			wantStderr: []string{
				": warning: revocation checks (verify.firebase.revocation.enabled) need Firebase Admin credentials, and neither verify.firebase.revocation.credentials_file nor GOOGLE_APPLICATION_CREDENTIALS is set",
				"application_default_credentials.json does not exist: serve will get them only from a metadata server",
			},
		},
		{
			name:     "one warning for the features sharing credentials",
			giveYAML: worker,
			wantStderr: []string{
				"revocation checks (verify.firebase.revocation.enabled) and the federation worker (federation.worker.enabled) need Firebase Admin credentials, and neither verify.firebase.revocation.credentials_file nor federation.firebase_credentials_file nor GOOGLE_APPLICATION_CREDENTIALS",
			},
		},
		{
			name:     "named file not JSON",
			giveYAML: revocation,
			giveEnv:  []string{"AUTHGATE_VERIFY_FIREBASE_REVOCATION_CREDENTIALS_FILE=" + notJSON},
			wantCode: 2,
			wantStderr: []string{
				"verify.firebase.revocation.credentials_file: credentials file " + notJSON + ": not JSON; revocation checks (verify.firebase.revocation.enabled) need Firebase Admin credentials",
			},
			wantNot: []string{"warning"},
		},
		{
			name:       "federation file not a credentials file",
			giveYAML:   worker,
			giveEnv:    []string{"AUTHGATE_FEDERATION_FIREBASE_CREDENTIALS_FILE=" + noType, "AUTHGATE_VERIFY_FIREBASE_REVOCATION_CREDENTIALS_FILE=" + key},
			wantCode:   2,
			wantStderr: []string{"federation.firebase_credentials_file: credentials file " + noType + `: no "type" field`},
			wantNot:    []string{"warning", "verify.firebase.revocation.credentials_file:"},
		},
		{
			name:       "GOOGLE_APPLICATION_CREDENTIALS not JSON",
			giveYAML:   revocation,
			giveEnv:    []string{"GOOGLE_APPLICATION_CREDENTIALS=" + notJSON},
			wantCode:   2,
			wantStderr: []string{"GOOGLE_APPLICATION_CREDENTIALS: credentials file " + notJSON + ": not JSON"},
		},
		{
			name:     "named file",
			giveYAML: revocation,
			giveEnv:  []string{"AUTHGATE_VERIFY_FIREBASE_REVOCATION_CREDENTIALS_FILE=" + key},
			wantNot:  []string{"warning"},
		},
		{
			name:     "gcloud application default credentials",
			giveYAML: revocation,
			giveEnv:  []string{"HOME=" + gcloudHome},
			wantNot:  []string{"warning"},
		},
		{
			name:     "emulator needs none",
			giveYAML: revocation + "    emulator: true\n",
			wantNot:  []string{"warning"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "authgate.yaml")
			e2eWriteFile(t, path, startFailureConfig+tt.giveYAML)
			code, _, stderr := runAuthgate(t, noCredentialsEnv(t, tt.giveEnv...), "check-config", "--config", path)
			if code != tt.wantCode {
				t.Errorf("check-config exit code %d, want %d\n%s", code, tt.wantCode, stderr)
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("check-config stderr does not contain %q:\n%s", want, stderr)
				}
			}
			for _, not := range tt.wantNot {
				if strings.Contains(stderr, not) {
					t.Errorf("check-config stderr contains %q:\n%s", not, stderr)
				}
			}
		})
	}
}

// TestServeMemoryLimit starts the binary with a cache budget: without
// GOMEMLIMIT the Go runtime's soft memory limit is that budget's part on
// the Go heap plus the headroom, so that the heap stays near the number the operator set; with
// GOMEMLIMIT the operator's value is the one that runs. Both are read
// where an operator would, in /metrics.
func TestServeMemoryLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authgate.yaml")
	e2eWriteFile(t, path, startFailureConfig+"cache:\n  local_max_bytes: 16777216\n")
	for _, tc := range []struct {
		name string
		env  []string
		want float64
	}{
		// Empty, in case the test's own environment sets it: exec keeps
		// the last value of a variable, and the runtime reads "" as unset.
		{"derived from cache.local_max_bytes", []string{"GOMEMLIMIT="}, float64(16<<20 - cache.OffHeapBytes(16<<20) + memoryHeadroom)},
		{"GOMEMLIMIT wins", []string{"GOMEMLIMIT=300MiB"}, 300 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ag := startAuthgateEnv(t, path, tc.env...)
			if got := metricValue(t, ag, "go_gc_gomemlimit_bytes"); got != tc.want {
				t.Errorf("go_gc_gomemlimit_bytes = %.0f, want %.0f", got, tc.want)
			}
		})
	}
}

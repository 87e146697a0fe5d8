package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

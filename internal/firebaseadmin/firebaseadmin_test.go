package firebaseadmin_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2/google"

	"github.com/authgate/authgate/internal/firebaseadmin"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		give    string
		wantErr string // "" for none
		wantIs  error
	}{
		{name: "service account", give: writeFile(t, dir, "sa.json", `{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}`)},
		{name: "authorized user", give: writeFile(t, dir, "user.json", `{"type": "authorized_user"}`)},
		{name: "missing", give: filepath.Join(dir, "missing.json"), wantErr: "missing.json: no such file or directory", wantIs: fs.ErrNotExist},
		{name: "directory", give: dir, wantErr: "is a directory"},
		{name: "not JSON", give: writeFile(t, dir, "key.pem", "-----BEGIN PRIVATE KEY-----\nsecret\n"), wantErr: "key.pem: not JSON"},
		{name: "no type", give: writeFile(t, dir, "empty.json", `{}`), wantErr: `empty.json: no "type" field`},
		{name: "too big", give: writeFile(t, dir, "big.json", `{"type": "service_account", "x": "`+strings.Repeat("a", 70<<10)+`"}`), wantErr: "more than 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := firebaseadmin.CheckCredentialsFile(tt.give)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (err == nil) || !strings.Contains(got, tt.wantErr) {
				t.Fatalf("CheckCredentialsFile(%q) = %v, want an error containing %q", tt.give, err, tt.wantErr)
			}
			if err == nil {
				return
			}
			var fe *firebaseadmin.CredentialsFileError
			if !errors.As(err, &fe) || fe.Path != tt.give {
				t.Errorf("CheckCredentialsFile(%q) = %#v, want a *CredentialsFileError for the path", tt.give, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("CheckCredentialsFile(%q) = %v, want errors.Is %v", tt.give, err, tt.wantIs)
			}
			if strings.Contains(got, "secret") {
				t.Errorf("CheckCredentialsFile(%q) = %v, quotes the file", tt.give, err)
			}
		})
	}
}

// TestAuthClientCredentials checks that AuthClient finds missing or
// unusable credentials at once, where the SDK would wait for the first
// lookup, and that the Auth Emulator needs none.
func TestAuthClientCredentials(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("APPDATA", dir)
	notJSON := writeFile(t, dir, "not-json", "nope")
	gcloudHome := t.TempDir()
	writeFile(t, gcloudHome, filepath.Join(".config", "gcloud", "application_default_credentials.json"), "nope")
	tests := []struct {
		name     string
		giveFile string
		giveEnv  map[string]string
		wantErr  string
		wantIs   error
	}{
		{name: "none", wantIs: firebaseadmin.ErrNoCredentials, wantErr: "no Google credentials found"},
		{name: "named file not JSON", giveFile: notJSON, wantErr: "credentials file " + notJSON + ": not JSON"},
		{name: "GOOGLE_APPLICATION_CREDENTIALS not JSON", giveEnv: map[string]string{firebaseadmin.CredentialsEnv: notJSON}, wantErr: "credentials file " + notJSON + ": not JSON"},
		{name: "gcloud file not JSON", giveEnv: map[string]string{"HOME": gcloudHome}, wantErr: "application_default_credentials.json: not JSON"},
		{name: "emulator needs none", giveEnv: map[string]string{firebaseadmin.EmulatorEnv: "127.0.0.1:9099"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HOME", t.TempDir())
			t.Setenv(firebaseadmin.CredentialsEnv, "")
			t.Setenv(firebaseadmin.EmulatorEnv, "")
			for k, v := range tt.giveEnv {
				t.Setenv(k, v)
			}
			if tt.wantIs == firebaseadmin.ErrNoCredentials {
				if _, err := google.FindDefaultCredentials(t.Context()); err == nil {
					t.Skip("application default credentials found (a metadata server?)")
				}
			}
			_, err := firebaseadmin.AuthClient(t.Context(), "demo-authgate", tt.giveFile)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (err == nil) || !strings.Contains(got, tt.wantErr) {
				t.Fatalf("AuthClient = %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("AuthClient = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}

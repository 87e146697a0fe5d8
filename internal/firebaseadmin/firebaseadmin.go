// Package firebaseadmin builds the Firebase Admin SDK's Auth client the one
// way authgate needs it, for verify (revocation) and federation (profiles).
package firebaseadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"
)

// Environment variables the Admin SDK reads.
const (
	// CredentialsEnv names a credentials file for Google's application
	// default credentials.
	CredentialsEnv = "GOOGLE_APPLICATION_CREDENTIALS"
	// EmulatorEnv points the SDK at the Auth Emulator, which needs no
	// credentials.
	EmulatorEnv = "FIREBASE_AUTH_EMULATOR_HOST"
)

// ErrNoCredentials is returned by AuthClient when no credentials file is
// given and Google's application default credentials are not found either:
// no GOOGLE_APPLICATION_CREDENTIALS, no gcloud application default
// credentials file, no metadata server.
var ErrNoCredentials = errors.New("no Google credentials found")

// maxCredentialsFileBytes bounds a credentials file; a service account key
// is about 2.4 KB.
const maxCredentialsFileBytes = 64 << 10

// CredentialsFileError is a credentials file that cannot be read or is not
// a Google credentials file.
type CredentialsFileError struct {
	Path string
	Err  error
}

func (e *CredentialsFileError) Error() string {
	return fmt.Sprintf("credentials file %s: %v", e.Path, e.Err)
}

func (e *CredentialsFileError) Unwrap() error { return e.Err }

// CheckCredentialsFile reports, as a *CredentialsFileError, whether path
// cannot be read or is not a Google credentials file: a JSON object with a
// "type" (service_account, authorized_user, external_account, ...). It
// does not check that the credentials are accepted.
func CheckCredentialsFile(path string) error {
	fail := func(err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return &CredentialsFileError{Path: path, Err: err}
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialsFileBytes+1))
	if err != nil {
		return fail(err)
	}
	if len(b) > maxCredentialsFileBytes {
		return fail(fmt.Errorf("more than %d bytes", maxCredentialsFileBytes))
	}
	var c struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		// The JSON error quotes no content, and a key file is a secret.
		return fail(errors.New("not JSON"))
	}
	if c.Type == "" {
		return fail(errors.New(`no "type" field: not a Google credentials file`))
	}
	return nil
}

// WellKnownFile is where gcloud auth application-default login writes
// application default credentials, for home (or, on Windows, appData).
func WellKnownFile(home, appData string) string {
	const f = "application_default_credentials.json"
	if runtime.GOOS == "windows" {
		return filepath.Join(appData, "gcloud", f)
	}
	return filepath.Join(home, ".config", "gcloud", f)
}

// AuthClient returns an Admin SDK Auth client for projectID.
// credentialsFile is a credentials file (a service account key); empty
// means Google's application default credentials (GOOGLE_APPLICATION_CREDENTIALS,
// the gcloud file, or the metadata server, as with GKE Workload Identity).
// With FIREBASE_AUTH_EMULATOR_HOST set the SDK talks to the Auth Emulator
// and uses no credentials at all, which is why authgate refuses that
// variable outside emulator mode. The SDK builds and owns its HTTP
// transport and makes no request until the first lookup. Its own error
// for missing credentials names neither the cause nor the remedy, so
// AuthClient looks first, where the SDK will: a *CredentialsFileError for
// a file that cannot be used, ErrNoCredentials when none are found.
func AuthClient(ctx context.Context, projectID, credentialsFile string) (*auth.Client, error) {
	if projectID == "" {
		return nil, errors.New("firebase admin: project id is required")
	}
	var opts []option.ClientOption
	if credentialsFile != "" {
		opts = append(opts, option.WithCredentialsFile(credentialsFile))
	}
	if os.Getenv(EmulatorEnv) == "" {
		if err := checkCredentials(ctx, credentialsFile); err != nil {
			return nil, err
		}
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: projectID}, opts...)
	if err != nil {
		return nil, fmt.Errorf("firebase app: %w", err)
	}
	client, err := app.Auth(ctx)
	if err != nil {
		return nil, fmt.Errorf("firebase auth client: %w", err)
	}
	return client, nil
}

// checkCredentials looks for credentials where the SDK will: file, else
// the application default credentials.
func checkCredentials(ctx context.Context, file string) error {
	if file == "" {
		file = os.Getenv(CredentialsEnv)
	}
	if file != "" {
		return CheckCredentialsFile(file)
	}
	if home, err := os.UserHomeDir(); err == nil {
		if wk := WellKnownFile(home, os.Getenv("APPDATA")); fileExists(wk) {
			return CheckCredentialsFile(wk)
		}
	}
	// Neither: only the metadata server is left, which this asks.
	if _, err := google.FindDefaultCredentials(ctx); err != nil {
		return ErrNoCredentials
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

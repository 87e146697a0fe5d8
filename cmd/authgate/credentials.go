package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/authgate/authgate/internal/firebaseadmin"
)

// The keys that name a Firebase Admin credentials file.
const (
	revocationCredentialsKey = "verify.firebase.revocation.credentials_file"
	federationCredentialsKey = "federation.firebase_credentials_file"
)

// firebaseAdminNeed is a feature that calls Firebase with the Admin SDK,
// and where its credentials come from.
type firebaseAdminNeed struct {
	feature string   // what needs them, for messages
	keys    []string // the keys that may name a credentials file, first wins
	file    string   // the file in effect; "" means application default credentials
	fileKey string   // the key that set file
}

// revocationNeed is the revocation checks' need, with
// verify.firebase.revocation.credentials_file.
func revocationNeed(cfg Config) firebaseAdminNeed {
	n := firebaseAdminNeed{
		feature: "revocation checks (verify.firebase.revocation.enabled)",
		keys:    []string{revocationCredentialsKey},
		file:    cfg.Verify.Firebase.Revocation.CredentialsFile,
	}
	if n.file != "" {
		n.fileKey = revocationCredentialsKey
	}
	return n
}

// federationNeed is the need of the federation worker's retries and of
// the admin API's link endpoint, which read Firebase user records; ok is
// false when neither runs with Firebase.
func federationNeed(cfg Config) (n firebaseAdminNeed, ok bool) {
	if !cfg.Federation.Enabled || !cfg.Verify.Firebase.Enabled {
		return firebaseAdminNeed{}, false
	}
	var features []string
	if cfg.Federation.Worker.Enabled {
		features = append(features, "the federation worker (federation.worker.enabled)")
	}
	if key := cfg.Server.Admin.apiSecretKey(); key != "" {
		features = append(features, "the admin API's link and retry endpoints ("+key+")")
	}
	if len(features) == 0 {
		return firebaseAdminNeed{}, false
	}
	return sharedNeed(cfg, strings.Join(features, " and ")), true
}

// authAPINeed is the auth API's need: it creates, deletes and signs out
// users.
func authAPINeed(cfg Config) firebaseAdminNeed {
	return sharedNeed(cfg, "the auth API (auth_api.enabled)")
}

// sharedNeed is a need with federation.firebase_credentials_file, else
// verify.firebase.revocation.credentials_file.
func sharedNeed(cfg Config, feature string) firebaseAdminNeed {
	n := firebaseAdminNeed{feature: feature, keys: []string{federationCredentialsKey, revocationCredentialsKey}}
	switch {
	case cfg.Federation.FirebaseCredentialsFile != "":
		n.file, n.fileKey = cfg.Federation.FirebaseCredentialsFile, federationCredentialsKey
	case cfg.Verify.Firebase.Revocation.CredentialsFile != "":
		n.file, n.fileKey = cfg.Verify.Firebase.Revocation.CredentialsFile, revocationCredentialsKey
	}
	return n
}

// firebaseAdminNeeds lists what serve will build Firebase Admin clients
// for. The Auth Emulator needs no credentials.
func firebaseAdminNeeds(cfg Config) []firebaseAdminNeed {
	fb := cfg.Verify.Firebase
	if !fb.Enabled || fb.Emulator {
		return nil
	}
	var needs []firebaseAdminNeed
	if fb.Revocation.Enabled {
		needs = append(needs, revocationNeed(cfg))
	}
	if n, ok := federationNeed(cfg); ok {
		needs = append(needs, n)
	}
	if cfg.AuthAPI.Enabled {
		needs = append(needs, authAPINeed(cfg))
	}
	return needs
}

// firebaseAdminError names the feature whose Firebase Admin client could
// not be built, and what to provide.
func firebaseAdminError(n firebaseAdminNeed, err error) error {
	var fe *firebaseadmin.CredentialsFileError
	switch {
	case errors.Is(err, firebaseadmin.ErrNoCredentials):
		return fmt.Errorf("firebase admin for %s: %w: %s", n.feature, firebaseadmin.ErrNoCredentials, credentialsHelp(n))
	case errors.As(err, &fe):
		return fmt.Errorf("firebase admin for %s: %s: %w", n.feature, credentialsSource(n), fe)
	}
	return fmt.Errorf("firebase admin for %s: %w", n.feature, err)
}

// credentialsSource is the key, or variable, that named the credentials
// file in use.
func credentialsSource(n firebaseAdminNeed) string {
	if n.fileKey != "" {
		return n.fileKey
	}
	return firebaseadmin.CredentialsEnv
}

// credentialsHelp says what to provide when no credentials are found.
func credentialsHelp(n firebaseAdminNeed) string {
	return fmt.Sprintf("set %s to a service account key file, or %s, or run where application default credentials exist (gcloud auth application-default login, GKE Workload Identity); in development use the Auth Emulator (verify.firebase.emulator: true and %s)",
		strings.Join(n.keys, " or "), firebaseadmin.CredentialsEnv, emulatorEnv)
}

// firebaseCredentialProblems checks, for check-config and before serve,
// the Firebase Admin credentials that serve will use: a named file must be
// a readable credentials file (problems). Without one, application default
// credentials may still come from a metadata server (GKE, Compute Engine,
// Cloud Run), which only serve can ask: no file anywhere is a warning, and
// serve then fails with ErrNoCredentials if there is no metadata server
// either.
func firebaseCredentialProblems(cfg Config, environ []string) (problems []error, warnings []string) {
	type source struct {
		key, file string
		features  []string
		keys      []string
	}
	var sources []*source
	byFile := map[string]*source{}
	for _, n := range firebaseAdminNeeds(cfg) {
		s := byFile[n.file]
		if s == nil {
			s = &source{key: credentialsSource(n), file: n.file}
			byFile[n.file] = s
			sources = append(sources, s)
		}
		s.features = append(s.features, n.feature)
		for _, k := range n.keys {
			if !slices.Contains(s.keys, k) {
				s.keys = append(s.keys, k)
			}
		}
	}
	for _, s := range sources {
		key, file := s.key, s.file
		switch {
		case file != "":
			if fi, err := os.Stat(file); err != nil || !fi.Mode().IsRegular() {
				continue // Validate reports it already
			}
		case lookupEnv(environ, firebaseadmin.CredentialsEnv) != "":
			file = lookupEnv(environ, firebaseadmin.CredentialsEnv)
		default:
			home := lookupEnv(environ, "HOME")
			if home == "" {
				home, _ = os.UserHomeDir()
			}
			key, file = "application default credentials", firebaseadmin.WellKnownFile(home, lookupEnv(environ, "APPDATA"))
			if _, err := os.Stat(file); err != nil {
				warnings = append(warnings, fmt.Sprintf("%s need Firebase Admin credentials, and neither %s nor %s is set and %s does not exist: serve will get them only from a metadata server (GKE Workload Identity, Compute Engine, Cloud Run) and refuse to start elsewhere; in development use the Auth Emulator (verify.firebase.emulator: true and %s)",
					strings.Join(s.features, " and "), strings.Join(s.keys, " nor "), firebaseadmin.CredentialsEnv, file, emulatorEnv))
				continue
			}
		}
		if err := firebaseadmin.CheckCredentialsFile(file); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w; %s need Firebase Admin credentials", key, err, strings.Join(s.features, " and ")))
		}
	}
	return problems, warnings
}

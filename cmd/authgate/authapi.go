package main

import (
	"context"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/firebaseadmin"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/proxy/authapi"
	"github.com/authgate/authgate/verify"
)

// newAuthAPI builds the auth API on the verifier and the user table: a
// Firebase Admin client to create, delete and sign out users (with
// federation.firebase_credentials_file, else
// verify.firebase.revocation.credentials_file, else application default
// credentials, which must allow managing users), and the REST client for
// sign-in and refresh, pointed at the Auth Emulator in emulator mode, as
// the Admin SDK then is.
func newAuthAPI(ctx context.Context, cfg Config, v *verify.Verifier, store *federation.Store, log *zap.Logger, reg prometheus.Registerer) (*authapi.Handler, error) {
	fb := cfg.Verify.Firebase
	need := authAPINeed(cfg)
	client, err := firebaseadmin.AuthClient(ctx, fb.ProjectID, need.file)
	if err != nil {
		return nil, firebaseAdminError(need, err)
	}
	acfg := cfg.AuthAPI
	if host := os.Getenv(emulatorEnv); fb.Emulator && host != "" {
		acfg = acfg.WithEmulator(host)
	}
	sessions, err := authapi.NewIdentityToolkit(acfg)
	if err != nil {
		return nil, fmt.Errorf("auth api: %w", err)
	}
	h, err := authapi.New(acfg, authapi.Backends{
		Verifier: v,
		Users:    authapi.StoreUsers(store),
		Accounts: authapi.FirebaseAccounts(client),
		Sessions: sessions,
	}, log, reg, authapi.WithClientIP(proxy.ClientIP), authapi.WithReport(proxy.ReportOutcome))
	if err != nil {
		return nil, fmt.Errorf("auth api: %w", err)
	}
	return h, nil
}

// Package firebaseadmin builds the Firebase Admin SDK's Auth client the one
// way authgate needs it, for verify (revocation) and federation (profiles).
package firebaseadmin

import (
	"context"
	"errors"
	"fmt"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"
	"google.golang.org/api/option"
)

// AuthClient returns an Admin SDK Auth client for projectID.
// credentialsFile is a service account key file; empty means Google's
// application default credentials (GOOGLE_APPLICATION_CREDENTIALS, or the
// metadata server, as with GKE Workload Identity). With
// FIREBASE_AUTH_EMULATOR_HOST set the SDK talks to the Auth Emulator and
// uses no credentials at all, which is why authgate refuses that variable
// outside emulator mode. The SDK builds and owns its HTTP transport; no
// request is made until the first lookup.
func AuthClient(ctx context.Context, projectID, credentialsFile string) (*auth.Client, error) {
	if projectID == "" {
		return nil, errors.New("firebase admin: project id is required")
	}
	var opts []option.ClientOption
	if credentialsFile != "" {
		opts = append(opts, option.WithCredentialsFile(credentialsFile))
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

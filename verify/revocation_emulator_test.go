package verify

import (
	"context"
	"crypto/rand"
	"errors"
	"github.com/authgate/authgate/internal/configtest"
	"net"
	"os"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"
)

// emulatorProject is the project the Auth Emulator serves in CI: a demo-
// project needs no credentials and reaches nothing outside the emulator.
const emulatorProject = "demo-authgate"

// emulatorAuth returns an Admin SDK client of the Firebase Auth Emulator at
// FIREBASE_AUTH_EMULATOR_HOST (scripts/firebase-emulator.sh start). It skips
// the test when the variable is unset, and fails it when the emulator does
// not answer there.
func emulatorAuth(t *testing.T) (context.Context, *auth.Client) {
	t.Helper()
	host := os.Getenv("FIREBASE_AUTH_EMULATOR_HOST")
	if host == "" {
		t.Skip("FIREBASE_AUTH_EMULATOR_HOST not set: start the Firebase Auth Emulator with scripts/firebase-emulator.sh start and export FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:9099")
	}
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", host)
	if err != nil {
		t.Fatalf("FIREBASE_AUTH_EMULATOR_HOST=%s is set but the Auth Emulator does not answer: %v", host, err)
	}
	conn.Close()
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: emulatorProject})
	if err != nil {
		t.Fatalf("firebase.NewApp: %v", err)
	}
	client, err := app.Auth(ctx)
	if err != nil {
		t.Fatalf("app.Auth: %v", err)
	}
	return ctx, client
}

// emulatorUser creates a user with a fresh uid, deleted at the end of the
// test if it is still there.
func emulatorUser(t *testing.T, ctx context.Context, client *auth.Client) string {
	t.Helper()
	uid := "revocation-" + rand.Text()
	if _, err := client.CreateUser(ctx, (&auth.UserToCreate{}).UID(uid)); err != nil {
		t.Fatalf("CreateUser(%s): %v", uid, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.DeleteUser(ctx, uid); err != nil && !auth.IsUserNotFound(err) {
			t.Errorf("DeleteUser(%s): %v", uid, err)
		}
	})
	return uid
}

// TestRevocationEmulator walks one user through revocation, disabling and
// deletion against the real Auth Emulator, through the SDK-backed
// UserRecords. Firebase keeps the revocation time to the second, so the
// sessions compared with it start a minute before or after.
func TestRevocationEmulator(t *testing.T) {
	ctx, client := emulatorAuth(t)
	records, err := NewFirebaseRecords(ctx, emulatorProject, "")
	if err != nil {
		t.Fatalf("NewFirebaseRecords: %v", err)
	}
	clk := &revocationClock{t: time.Now()}
	r := newTestRevocation(t, configtest.Fill(RevocationConfig{Enabled: true, CacheTTL: time.Minute}, DefaultFirebaseConfig().Revocation), records, clk)
	uid := emulatorUser(t, ctx, client)

	created := time.Now()
	signedIn := firebaseIdentity(uid, created.Add(time.Minute), "auth_time", created.Add(time.Minute).Unix())
	if err := r.check(ctx, signedIn); err != nil {
		t.Fatalf("check() of a new user = %v, want nil", err)
	}

	// Revoke: a session from before is refused, once the cached state has
	// expired; a session from after is accepted.
	if err := client.RevokeRefreshTokens(ctx, uid); err != nil {
		t.Fatalf("RevokeRefreshTokens: %v", err)
	}
	revoked := time.Now()
	before := firebaseIdentity(uid, revoked.Add(-time.Minute), "auth_time", revoked.Add(-time.Minute).Unix())
	after := firebaseIdentity(uid, revoked.Add(time.Minute), "auth_time", revoked.Add(time.Minute).Unix())
	if err := r.check(ctx, before); err != nil {
		t.Fatalf("check() of an old session within the cache TTL = %v, want nil (cached state)", err)
	}
	clk.Add(time.Minute)
	if err := r.check(ctx, before); !errors.Is(err, ErrRevoked) || Reason(err) != "revoked" {
		t.Fatalf("check() of a session from before the revocation = %v (%s), want ErrRevoked (revoked)", err, Reason(err))
	}
	if err := r.check(ctx, after); err != nil {
		t.Fatalf("check() of a session from after the revocation = %v, want nil", err)
	}
	// The same with iat alone, as when a token has no auth_time.
	if err := r.check(ctx, firebaseIdentity(uid, revoked.Add(-time.Minute))); !errors.Is(err, ErrRevoked) {
		t.Fatalf("check() of a token issued before the revocation = %v, want ErrRevoked", err)
	}

	// Disable: every session is refused.
	if _, err := client.UpdateUser(ctx, uid, (&auth.UserToUpdate{}).Disabled(true)); err != nil {
		t.Fatalf("UpdateUser(Disabled(true)): %v", err)
	}
	if err := r.Invalidate(ctx, uid); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	if err := r.check(ctx, after); !errors.Is(err, ErrUserDisabled) || !errors.Is(err, ErrRevoked) || Reason(err) != "disabled" {
		t.Fatalf("check() of a disabled user = %v (%s), want ErrUserDisabled and ErrRevoked (disabled)", err, Reason(err))
	}

	// Delete: the user's tokens are refused.
	if err := client.DeleteUser(ctx, uid); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if err := r.Invalidate(ctx, uid); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	if err := r.check(ctx, after); !errors.Is(err, ErrUserNotFound) || !errors.Is(err, ErrRevoked) || Reason(err) != "revoked" {
		t.Fatalf("check() of a deleted user = %v (%s), want ErrUserNotFound and ErrRevoked (revoked)", err, Reason(err))
	}
}

// TestFirebaseRecordsEmulator checks what the SDK-backed UserRecords reads
// from the emulator.
func TestFirebaseRecordsEmulator(t *testing.T) {
	ctx, client := emulatorAuth(t)
	records, err := NewFirebaseRecords(ctx, emulatorProject, "")
	if err != nil {
		t.Fatalf("NewFirebaseRecords: %v", err)
	}
	uid := emulatorUser(t, ctx, client)

	st, err := records.UserState(ctx, uid)
	if err != nil || st.Disabled || st.NotFound {
		t.Fatalf("UserState(new user) = %+v, %v; want enabled and found", st, err)
	}

	if err := client.RevokeRefreshTokens(ctx, uid); err != nil {
		t.Fatalf("RevokeRefreshTokens: %v", err)
	}
	now := time.Now()
	st, err = records.UserState(ctx, uid)
	if err != nil {
		t.Fatalf("UserState(revoked user): %v", err)
	}
	// Kept to the second, so up to a second before now.
	if d := now.Sub(st.TokensValidAfter); d < 0 || d > 10*time.Second {
		t.Errorf("UserState(revoked user).TokensValidAfter = %s, want within 10s before %s", st.TokensValidAfter, now)
	}

	if _, err := client.UpdateUser(ctx, uid, (&auth.UserToUpdate{}).Disabled(true)); err != nil {
		t.Fatalf("UpdateUser(Disabled(true)): %v", err)
	}
	if st, err := records.UserState(ctx, uid); err != nil || !st.Disabled {
		t.Errorf("UserState(disabled user) = %+v, %v; want Disabled", st, err)
	}

	if _, err := records.UserState(ctx, uid+"-missing"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("UserState(missing user) error = %v, want ErrUserNotFound", err)
	}
}

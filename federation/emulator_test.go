package federation

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"
)

// emulatorProject is the project the Auth Emulator serves in CI: a demo-
// project needs no credentials and reaches nothing outside the emulator.
const emulatorProject = "demo-authgate"

// emulator is the Firebase Auth Emulator at FIREBASE_AUTH_EMULATOR_HOST:
// an Admin SDK client to set users up with, and the Profiles under test.
type emulator struct {
	client   *auth.Client
	profiles Profiles
}

// testEmulator returns the emulator, skipping the test when
// FIREBASE_AUTH_EMULATOR_HOST is unset, and failing it when the emulator
// does not answer there: CI must not pass by skipping.
func testEmulator(t *testing.T) *emulator {
	t.Helper()
	host := os.Getenv("FIREBASE_AUTH_EMULATOR_HOST")
	if host == "" {
		t.Skip("FIREBASE_AUTH_EMULATOR_HOST not set; skipping Firebase Auth Emulator test " +
			"(start it with scripts/firebase-emulator.sh start and export FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:9099)")
	}
	if testing.Short() {
		t.Skip("-short: skipping Firebase Auth Emulator test")
	}
	ctx := testContext(t)
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
	profiles, err := NewFirebaseProfiles(ctx, emulatorProject, "")
	if err != nil {
		t.Fatalf("NewFirebaseProfiles: %v", err)
	}
	return &emulator{client: client, profiles: profiles}
}

// fbUser is the part of a Firebase user a test sets.
type fbUser struct {
	email       string // "" for none; made unique by newUser
	verified    bool
	displayName string
	disabled    bool
}

// newUser creates a Firebase user with a fresh uid, and an email made
// unique to the test from u.email's local part, deleted when the test
// ends. It returns the uid and the email.
func (e *emulator) newUser(t *testing.T, u fbUser) (uid, email string) {
	t.Helper()
	uid = "fed-" + strings.ToLower(rand.Text())
	c := (&auth.UserToCreate{}).UID(uid).Disabled(u.disabled)
	if u.email != "" {
		local, _, _ := strings.Cut(u.email, "@")
		email = local + "-" + strings.ToLower(rand.Text()) + "@example.test"
		c = c.Email(email).EmailVerified(u.verified)
	}
	if u.displayName != "" {
		c = c.DisplayName(u.displayName)
	}
	ctx := testContext(t)
	if _, err := e.client.CreateUser(ctx, c); err != nil {
		t.Fatalf("CreateUser(%s): %v", uid, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.client.DeleteUser(ctx, uid); err != nil && !auth.IsUserNotFound(err) {
			t.Errorf("DeleteUser(%s): %v", uid, err)
		}
	})
	return uid, email
}

// update changes a Firebase user.
func (e *emulator) update(t *testing.T, uid string, u *auth.UserToUpdate) {
	t.Helper()
	if _, err := e.client.UpdateUser(testContext(t), uid, u); err != nil {
		t.Fatalf("UpdateUser(%s): %v", uid, err)
	}
}

func TestFirebaseProfilesEmulator(t *testing.T) {
	e := testEmulator(t)
	ctx := testContext(t)
	uid, email := e.newUser(t, fbUser{email: "profile@example.test", verified: true, displayName: "Pro File"})
	want := Profile{UID: uid, Email: email, EmailVerified: true, DisplayName: "Pro File"}

	tests := []struct {
		name    string
		lookup  func() (Profile, error)
		want    Profile
		wantErr error
	}{
		{name: "by uid", lookup: func() (Profile, error) { return e.profiles.ByUID(ctx, uid) }, want: want},
		{name: "by email", lookup: func() (Profile, error) { return e.profiles.ByEmail(ctx, email) }, want: want},
		{name: "by email, other case", lookup: func() (Profile, error) { return e.profiles.ByEmail(ctx, strings.ToUpper(email)) }, want: want},
		{name: "unknown uid", lookup: func() (Profile, error) { return e.profiles.ByUID(ctx, uid+"-missing") }, wantErr: ErrNotFound},
		{name: "unknown email", lookup: func() (Profile, error) { return e.profiles.ByEmail(ctx, "missing-"+email) }, wantErr: ErrNotFound},
		{name: "empty uid", lookup: func() (Profile, error) { return e.profiles.ByUID(ctx, "") }, wantErr: ErrNotFound},
		{name: "uid too long", lookup: func() (Profile, error) { return e.profiles.ByUID(ctx, strings.Repeat("u", 129)) }, wantErr: ErrNotFound},
		{name: "malformed email", lookup: func() (Profile, error) { return e.profiles.ByEmail(ctx, "a@b@c") }, wantErr: ErrNotFound},
		{name: "email without domain", lookup: func() (Profile, error) { return e.profiles.ByEmail(ctx, "nobody@") }, wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.lookup()
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("lookup = %+v, %v, want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}

	e.update(t, uid, (&auth.UserToUpdate{}).Disabled(true))
	if got, err := e.profiles.ByUID(ctx, uid); err != nil || !got.Disabled {
		t.Errorf("ByUID(disabled user) = %+v, %v, want Disabled", got, err)
	}
}

// Firebase not answering is no verdict on the user: ErrFirebaseUnavailable,
// never ErrNotFound.
func TestFirebaseProfilesUnavailable(t *testing.T) {
	testEmulator(t) // the SDK goes to the emulator host only in emulator mode
	t.Setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:1")
	p, err := NewFirebaseProfiles(testContext(t), emulatorProject, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testContext(t), 2*time.Second)
	defer cancel()
	if _, err := p.ByUID(ctx, "someone"); !errors.Is(err, ErrFirebaseUnavailable) || errors.Is(err, ErrNotFound) {
		t.Errorf("ByUID with Firebase down = %v, want ErrFirebaseUnavailable", err)
	}
	if _, err := p.ByEmail(ctx, "someone@example.test"); !errors.Is(err, ErrFirebaseUnavailable) || errors.Is(err, ErrNotFound) {
		t.Errorf("ByEmail with Firebase down = %v, want ErrFirebaseUnavailable", err)
	}
	if _, err := NewFirebaseProfiles(testContext(t), "", ""); err == nil {
		t.Error("NewFirebaseProfiles without a project id succeeded")
	}
}

package authapi

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/auth"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/verify"
)

// These tests run the auth API against the real Firebase Auth Emulator and
// PostgreSQL (and Redis, for replicas), as CI does: see testServices.

const goodPassword = "correct horse 7"

func TestRegister(t *testing.T) {
	s := testServices(t)
	r := s.newReplica(t, replicaOpts{schema: s.testSchema(t)})
	email := s.newEmail(t, "register")

	username := "reg-" + strings.ToLower(rand.Text()[:8])
	a := call(t, r.h, "POST", "/v1/auth/register", creds{Email: email, Password: goodPassword, Username: username, DisplayName: "Reg Ister"}, "")
	if a.status != http.StatusCreated {
		t.Fatalf("register = %d %s, want 201", a.status, a.body)
	}
	uid, id := a.str(t, "user", "firebaseUid"), a.str(t, "user", "id")
	if uid == "" || id == "" || a.str(t, "user", "email") != email {
		t.Errorf("register answered user %s, want its id, Firebase uid and email", a.body)
	}
	tok := a.str(t, "idToken")
	if a.str(t, "refreshToken") == "" {
		t.Error("register answered no refresh token")
	}
	got, err := r.verifier.Verify(testContext(t), tok)
	if err != nil || got.FirebaseUID != uid {
		t.Errorf("Verify(registered ID token) = %+v, %v, want uid %s", got, err, uid)
	}
	fu, err := s.admin.GetUser(testContext(t), uid)
	if err != nil || fu.Email != email || fu.DisplayName != "Reg Ister" {
		t.Errorf("Firebase user = %+v, %v, want email and display name", fu, err)
	}
	var rowUID string
	var signedIn bool
	s.queryRow(t, `SELECT firebase_uid, last_login IS NOT NULL AND updated_at >= last_login FROM `+schemaUsers(r)+` WHERE id = $1`, []any{id}, &rowUID, &signedIn)
	if rowUID != uid {
		t.Errorf("row's firebase_uid = %q, want %q", rowUID, uid)
	}
	// Registration signs the user in, as login does.
	if !signedIn || a.str(t, "user", "lastLogin") == "" {
		t.Errorf("register answered lastLogin %q, row's last_login set and updated_at moved with it = %t; want both",
			a.str(t, "user", "lastLogin"), signedIn)
	}

	tests := []struct {
		name       string
		give       creds
		wantStatus int
		wantCode   string
	}{
		{name: "email exists", give: creds{Email: email, Password: goodPassword}, wantStatus: 409, wantCode: CodeEmailExists},
		{name: "same email, other case", give: creds{Email: strings.ToUpper(email), Password: goodPassword}, wantStatus: 409, wantCode: CodeEmailExists},
		{name: "weak password", give: creds{Email: s.newEmail(t, "weak"), Password: "short"}, wantStatus: 400, wantCode: CodeWeakPassword},
		{name: "bad email", give: creds{Email: "not an email", Password: goodPassword}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "bad username", give: creds{Email: s.newEmail(t, "user"), Password: goodPassword, Username: "a b"}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "same username, other case", give: creds{Email: s.newEmail(t, "upper"), Password: goodPassword, Username: strings.ToUpper(username)}, wantStatus: 409, wantCode: CodeUsernameTaken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, r.h, "POST", "/v1/auth/register", tt.give, "")
			if a.status != tt.wantStatus || a.code(t) != tt.wantCode {
				t.Errorf("register = %d %s, want %d %s", a.status, a.body, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func schemaUsers(r *replica) string { return `"` + r.schema + `".users` }

// A registration whose user row cannot be written leaves no Firebase user.
func TestRegisterRollback(t *testing.T) {
	s := testServices(t)
	schema := s.testSchema(t)
	r := s.newReplica(t, replicaOpts{schema: schema})
	username := "taken-" + strings.ToLower(rand.Text()[:8])
	if a := call(t, r.h, "POST", "/v1/auth/register", creds{Email: s.newEmail(t, "first"), Password: goodPassword, Username: username}, ""); a.status != 201 {
		t.Fatalf("register = %d %s", a.status, a.body)
	}
	legacyEmail := s.newEmail(t, "legacy")
	s.exec(t, `INSERT INTO "`+schema+`".users (email) VALUES ($1)`, legacyEmail)
	down := s.newReplica(t, replicaOpts{schema: schema, dbURL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})

	tests := []struct {
		name       string
		h          http.Handler
		give       creds
		wantStatus int
		wantCode   string
	}{
		{name: "username taken", h: r.h, give: creds{Email: s.newEmail(t, "second"), Password: goodPassword, Username: username}, wantStatus: 409, wantCode: CodeUsernameTaken},
		{name: "email of a row without Firebase user", h: r.h, give: creds{Email: legacyEmail, Password: goodPassword}, wantStatus: 409, wantCode: CodeEmailExists},
		{name: "database unreachable", h: down.h, give: creds{Email: s.newEmail(t, "nodb"), Password: goodPassword}, wantStatus: 503, wantCode: CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, tt.h, "POST", "/v1/auth/register", tt.give, "")
			if a.status != tt.wantStatus || a.code(t) != tt.wantCode {
				t.Errorf("register = %d %s, want %d %s", a.status, a.body, tt.wantStatus, tt.wantCode)
			}
			if s.hasFirebaseUser(t, tt.give.Email) {
				t.Errorf("the Firebase user of %s is still there, want it deleted", tt.name)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	s := testServices(t)
	r := s.newReplica(t, replicaOpts{schema: s.testSchema(t)})

	t.Run("with user row", func(t *testing.T) {
		email := s.newEmail(t, "withrow")
		reg := call(t, r.h, "POST", "/v1/auth/register", creds{Email: email, Password: goodPassword}, "")
		if reg.status != 201 {
			t.Fatalf("register = %d %s", reg.status, reg.body)
		}
		a := call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: goodPassword}, "")
		if a.status != 200 || a.str(t, "user", "id") != reg.str(t, "user", "id") || a.str(t, "idToken") == "" || a.str(t, "refreshToken") == "" {
			t.Fatalf("login = %d %s, want 200 with the registered user and tokens", a.status, a.body)
		}
		if a.str(t, "user", "lastLogin") == "" {
			t.Error("login answered no lastLogin")
		}
		var n int
		s.queryRow(t, `SELECT count(*) FROM `+schemaUsers(r)+` WHERE id = $1 AND last_login IS NOT NULL`, []any{a.str(t, "user", "id")}, &n)
		if n != 1 {
			t.Error("last_login not written")
		}
	})
	t.Run("without user row", func(t *testing.T) {
		email := s.newEmail(t, "norow")
		uid := s.firebaseUser(t, email, goodPassword)
		a := call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: goodPassword}, "")
		if a.status != 200 || a.str(t, "user", "firebaseUid") != uid || a.str(t, "user", "id") == "" {
			t.Fatalf("login = %d %s, want 200 with a new row for %s", a.status, a.body, uid)
		}
		var n int
		s.queryRow(t, `SELECT count(*) FROM `+schemaUsers(r)+` WHERE firebase_uid = $1 AND last_login IS NOT NULL`, []any{uid}, &n)
		if n != 1 {
			t.Errorf("rows of %s with last_login = %d, want 1", uid, n)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		email := s.newEmail(t, "wrong")
		s.firebaseUser(t, email, goodPassword)
		a := call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: "not the password"}, "")
		if a.status != 401 || a.code(t) != CodeInvalidCredentials {
			t.Errorf("login = %d %s, want 401 %s", a.status, a.body, CodeInvalidCredentials)
		}
	})
}

// legacyUser inserts an account of the old service with a bcrypt hash of
// password and returns its id.
func (s *services) legacyUser(t testing.TB, schema, email, password string, verified bool, cost int) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	s.queryRow(t, `INSERT INTO "`+schema+`".users (email, username, password_hash, email_verified) VALUES ($1, $2, $3, $4) RETURNING id::text`,
		[]any{email, "legacy-" + strings.ToLower(rand.Text()[:10]), string(hash), verified}, &id)
	// Its Firebase user, once made, has the account's id as uid.
	t.Cleanup(func() { _ = s.admin.DeleteUser(testContext(t), id) })
	return id
}

func TestLazyMigration(t *testing.T) {
	s := testServices(t)
	schema := s.testSchema(t)
	r := s.newReplica(t, replicaOpts{schema: schema})
	email := s.newEmail(t, "legacy")
	id := s.legacyUser(t, schema, email, goodPassword, true, testCost)

	a := call(t, r.h, "POST", "/v1/auth/login", creds{Email: strings.ToUpper(email), Password: goodPassword}, "")
	if a.status != 200 || a.str(t, "user", "id") != id || a.str(t, "user", "firebaseUid") != id {
		t.Fatalf("login of a legacy account = %d %s, want 200 with its row linked to uid %s", a.status, a.body, id)
	}
	got, err := r.verifier.Verify(testContext(t), a.str(t, "idToken"))
	if err != nil || got.FirebaseUID != id || !got.EmailVerified {
		t.Errorf("Verify(ID token of the moved account) = %+v, %v, want uid %s with a verified email", got, err, id)
	}
	fu, err := s.admin.GetUser(testContext(t), id)
	if err != nil || fu.Email != email || !fu.EmailVerified {
		t.Errorf("Firebase user %s = %+v, %v, want the account's email, verified", id, fu, err)
	}
	var hashCleared bool
	var uid string
	s.queryRow(t, `SELECT password_hash IS NULL, firebase_uid FROM "`+schema+`".users WHERE id = $1`, []any{id}, &hashCleared, &uid)
	if !hashCleared || uid != id {
		t.Errorf("row after the move: hash cleared %v, firebase_uid %q; want cleared and %q", hashCleared, uid, id)
	}
	if n := testutil.ToFloat64(r.h.m.requests.WithLabelValues("login", resultMigrated)); n != 1 {
		t.Errorf("login results migrated = %v, want 1", n)
	}

	// From now on Firebase alone signs the account in.
	checks := testutil.ToFloat64(r.h.m.hashChecks)
	if a := call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: goodPassword}, ""); a.status != 200 || a.str(t, "user", "id") != id {
		t.Errorf("second login = %d %s, want 200", a.status, a.body)
	}
	if n := testutil.ToFloat64(r.h.m.hashChecks) - checks; n != 0 {
		t.Errorf("hash checks on the second login = %v, want 0", n)
	}
	if n := testutil.ToFloat64(r.h.m.requests.WithLabelValues("login", resultMigrated)); n != 1 {
		t.Errorf("login results migrated after the second login = %v, want still 1", n)
	}

	t.Run("unverified email stays unverified", func(t *testing.T) {
		email := s.newEmail(t, "unverified")
		id := s.legacyUser(t, schema, email, goodPassword, false, testCost)
		a := call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: goodPassword}, "")
		if a.status != 200 || a.str(t, "user", "id") != id {
			t.Fatalf("login = %d %s, want 200", a.status, a.body)
		}
		if fu, err := s.admin.GetUser(testContext(t), id); err != nil || fu.EmailVerified {
			t.Errorf("Firebase user = %+v, %v, want its email unverified", fu, err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		email := s.newEmail(t, "legacywrong")
		id := s.legacyUser(t, schema, email, goodPassword, true, testCost)
		a := call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: "not the password"}, "")
		if a.status != 401 || a.code(t) != CodeInvalidCredentials {
			t.Errorf("login = %d %s, want 401 %s", a.status, a.body, CodeInvalidCredentials)
		}
		if s.hasFirebaseUser(t, email) {
			t.Errorf("a wrong password moved account %s to Firebase", id)
		}
	})
	t.Run("disabled account", func(t *testing.T) {
		email := s.newEmail(t, "legacydisabled")
		id := s.legacyUser(t, schema, email, goodPassword, true, testCost)
		s.exec(t, `UPDATE "`+schema+`".users SET is_active = false WHERE id = $1`, id)
		a := call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: goodPassword}, "")
		if a.status != 403 || a.code(t) != CodeUserDisabled || s.hasFirebaseUser(t, email) {
			t.Errorf("login = %d %s, want 403 %s and no Firebase user", a.status, a.body, CodeUserDisabled)
		}
	})
}

// Wrong password and unknown email get the same answer after the same
// work: one bcrypt comparison each. Timings are measured by
// BenchmarkLogin, not asserted.
func TestLoginEnumeration(t *testing.T) {
	s := testServices(t)
	schema := s.testSchema(t)
	r := s.newReplica(t, replicaOpts{schema: schema})
	fbEmail := s.newEmail(t, "fb")
	s.firebaseUser(t, fbEmail, goodPassword)
	legacyEmail := s.newEmail(t, "legacy")
	s.legacyUser(t, schema, legacyEmail, goodPassword, true, testCost)
	disabledEmail := s.newEmail(t, "disabled")
	uid := s.firebaseUser(t, disabledEmail, goodPassword)
	if _, err := s.admin.UpdateUser(testContext(t), uid, (&auth.UserToUpdate{}).Disabled(true)); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		give creds
	}{
		{name: "unknown email", give: creds{Email: s.newEmail(t, "nobody"), Password: "wrong password 1"}},
		{name: "firebase user, wrong password", give: creds{Email: fbEmail, Password: "wrong password 1"}},
		{name: "legacy user, wrong password", give: creds{Email: legacyEmail, Password: "wrong password 1"}},
		{name: "disabled firebase user, wrong password", give: creds{Email: disabledEmail, Password: "wrong password 1"}},
	}
	var first answer
	for i, tt := range tests {
		before := testutil.ToFloat64(r.h.m.hashChecks)
		a := call(t, r.h, "POST", "/v1/auth/login", tt.give, "")
		if got := testutil.ToFloat64(r.h.m.hashChecks) - before; got != 1 {
			t.Errorf("%s: bcrypt comparisons = %v, want 1", tt.name, got)
		}
		if a.status != http.StatusUnauthorized || a.code(t) != CodeInvalidCredentials {
			t.Errorf("%s: login = %d %s, want 401 %s", tt.name, a.status, a.body, CodeInvalidCredentials)
		}
		if i == 0 {
			first = a
			continue
		}
		if a.status != first.status || !bytes.Equal(a.body, first.body) || a.header.Get("Content-Type") != first.header.Get("Content-Type") {
			t.Errorf("%s: answer %d %q differs from the %s's %d %q", tt.name, a.status, a.body, tests[0].name, first.status, first.body)
		}
	}
}

func TestRefresh(t *testing.T) {
	s := testServices(t)
	r := s.newReplica(t, replicaOpts{schema: s.testSchema(t)})
	email := s.newEmail(t, "refresh")
	reg := call(t, r.h, "POST", "/v1/auth/register", creds{Email: email, Password: goodPassword}, "")
	if reg.status != 201 {
		t.Fatalf("register = %d %s", reg.status, reg.body)
	}
	a := call(t, r.h, "POST", "/v1/auth/refresh", map[string]string{"refreshToken": reg.str(t, "refreshToken")}, "")
	if a.status != 200 || a.str(t, "idToken") == "" || a.str(t, "refreshToken") == "" || a.json(t)["expiresIn"] == nil {
		t.Fatalf("refresh = %d %s, want 200 with new tokens", a.status, a.body)
	}
	got, err := r.verifier.Verify(testContext(t), a.str(t, "idToken"))
	if err != nil || got.FirebaseUID != reg.str(t, "user", "firebaseUid") {
		t.Errorf("Verify(refreshed ID token) = %+v, %v, want the registered user", got, err)
	}
	tests := []struct {
		name       string
		give       any
		wantStatus int
		wantCode   string
	}{
		{name: "unknown token", give: map[string]string{"refreshToken": "not-a-refresh-token"}, wantStatus: 401, wantCode: CodeInvalidToken},
		{name: "empty", give: map[string]string{"refreshToken": ""}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "not JSON", give: "refreshToken=x", wantStatus: 400, wantCode: CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, r.h, "POST", "/v1/auth/refresh", tt.give, "")
			if a.status != tt.wantStatus || a.code(t) != tt.wantCode {
				t.Errorf("refresh = %d %s, want %d %s", a.status, a.body, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func TestMe(t *testing.T) {
	s := testServices(t)
	r := s.newReplica(t, replicaOpts{schema: s.testSchema(t)})
	email := s.newEmail(t, "me")
	reg := call(t, r.h, "POST", "/v1/auth/register", creds{Email: email, Password: goodPassword}, "")
	if reg.status != 201 {
		t.Fatalf("register = %d %s", reg.status, reg.body)
	}
	a := call(t, r.h, "GET", "/v1/auth/me", nil, reg.str(t, "idToken"))
	if a.status != 200 || a.str(t, "identity", "provider") != "firebase" || a.str(t, "identity", "email") != email ||
		a.str(t, "user", "id") != reg.str(t, "user", "id") {
		t.Errorf("me = %d %s, want the identity and the registered row", a.status, a.body)
	}
	for _, tok := range []string{"", "garbage"} {
		if a := call(t, r.h, "GET", "/v1/auth/me", nil, tok); a.status != 401 || a.code(t) != CodeInvalidToken {
			t.Errorf("me with token %q = %d %s, want 401 %s", tok, a.status, a.body, CodeInvalidToken)
		}
	}
}

// With PostgreSQL down and on_unavailable allow, login and me answer 200
// with what the token says and nothing made up: the row's fields are null
// or absent, federationStatus is degraded.
func TestDegradedAnswers(t *testing.T) {
	s := testServices(t)
	r := s.newReplica(t, replicaOpts{schema: s.testSchema(t), degrade: true,
		dbURL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	email := s.newEmail(t, "degraded")
	uid := s.firebaseUser(t, email, goodPassword)
	login := call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: goodPassword}, "")
	if login.status != 200 || login.str(t, "idToken") == "" {
		t.Fatalf("login with PostgreSQL down = %d %s, want 200 with tokens", login.status, login.body)
	}
	me := call(t, r.h, "GET", "/v1/auth/me", nil, login.str(t, "idToken"))
	if me.status != 200 {
		t.Fatalf("me with PostgreSQL down = %d %s, want 200", me.status, me.body)
	}
	want := map[string]any{"id": nil, "isActive": nil, "tokenBalance": nil, "firebaseUid": uid, "email": email, "federationStatus": "degraded"}
	for _, a := range []answer{login, me} {
		got, _ := a.json(t)["user"].(map[string]any)
		if !maps.Equal(got, want) {
			t.Errorf("user with PostgreSQL down = %v, want %v (no username, userType, lastLogin, createdAt)", got, want)
		}
	}
}

// A logout on one replica makes every replica refuse the user's older ID
// tokens at once: two authgates share Redis (and the user table), both
// accept the token and hold the user's record in their in-process tier,
// and the other one refuses the token within a second of the logout,
// without waiting for any TTL.
func TestLogoutAcrossReplicas(t *testing.T) {
	s := testServices(t)
	rc := testRedisConfig(t)
	schema := s.testSchema(t)
	a := s.newReplica(t, replicaOpts{schema: schema, redis: &rc})
	b := s.newReplica(t, replicaOpts{schema: schema, redis: &rc})
	waitSubscribed(t, rc, 2)
	email := s.newEmail(t, "logout")
	reg := call(t, a.h, "POST", "/v1/auth/register", creds{Email: email, Password: goodPassword}, "")
	if reg.status != 201 {
		t.Fatalf("register = %d %s", reg.status, reg.body)
	}
	tok, refresh := reg.str(t, "idToken"), reg.str(t, "refreshToken")
	for _, r := range []*replica{a, b, a, b} {
		if got := call(t, r.h, "GET", "/v1/auth/me", nil, tok); got.status != 200 {
			t.Fatalf("me before the logout = %d %s, want 200", got.status, got.body)
		}
	}

	start := time.Now()
	if got := call(t, a.h, "POST", "/v1/auth/logout", nil, tok); got.status != http.StatusNoContent {
		t.Fatalf("logout = %d %s, want 204", got.status, got.body)
	}
	t.Logf("logout took %s", time.Since(start))
	if got := call(t, a.h, "GET", "/v1/auth/me", nil, tok); got.status != 401 {
		t.Errorf("me on the replica that logged out = %d %s, want 401", got.status, got.body)
	}
	deadline := time.Now().Add(time.Second)
	for {
		got := call(t, b.h, "GET", "/v1/auth/me", nil, tok)
		if got.status == 401 && got.code(t) == CodeInvalidToken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("me on the other replica 1s after the logout = %d %s, want 401 %s", got.status, got.body, CodeInvalidToken)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := call(t, b.h, "POST", "/v1/auth/refresh", map[string]string{"refreshToken": refresh}, ""); got.status != 401 {
		t.Errorf("refresh after the logout = %d %s, want 401", got.status, got.body)
	}
	if got := call(t, b.h, "POST", "/v1/auth/logout", nil, tok); got.status != 401 {
		t.Errorf("logout again with the old token = %d %s, want 401", got.status, got.body)
	}

	// Signing in again works on every replica.
	again := call(t, b.h, "POST", "/v1/auth/login", creds{Email: email, Password: goodPassword}, "")
	if again.status != 200 {
		t.Fatalf("login after the logout = %d %s, want 200", again.status, again.body)
	}
	for _, r := range []*replica{a, b} {
		if got := call(t, r.h, "GET", "/v1/auth/me", nil, again.str(t, "idToken")); got.status != 200 {
			t.Errorf("me with the new token = %d %s, want 200", got.status, got.body)
		}
	}
}

// A legacy JWT cannot be logged out by Firebase.
func TestLogoutNeedsFirebaseToken(t *testing.T) {
	f := newFakes(t)
	f.verifier.ids["legacy-token"] = verify.Identity{Provider: verify.ProviderLegacy, Subject: "u1"}
	a := call(t, f.h, "POST", "/v1/auth/logout", nil, "legacy-token")
	if a.status != 400 || a.code(t) != CodeInvalidRequest {
		t.Errorf("logout with a legacy token = %d %s, want 400 %s", a.status, a.body, CodeInvalidRequest)
	}
}

// Passwords, tokens, emails and the Web API key never reach a log line,
// on any path: successes, refusals, a migration, a rollback, an outage.
func TestLogsHoldNoSecrets(t *testing.T) {
	s := testServices(t)
	schema := s.testSchema(t)
	r := s.newReplica(t, replicaOpts{schema: schema})
	down := s.newReplica(t, replicaOpts{schema: schema, dbURL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	email, legacyEmail, downEmail := s.newEmail(t, "secret"), s.newEmail(t, "secretlegacy"), s.newEmail(t, "secretdown")
	s.legacyUser(t, schema, legacyEmail, goodPassword, true, testCost)
	const wrong = "wrong password 42"
	secrets := []string{goodPassword, wrong, email, legacyEmail, downEmail, "emulator-key"}

	username := "secret-" + strings.ToLower(rand.Text()[:8])
	reg := call(t, r.h, "POST", "/v1/auth/register", creds{Email: email, Password: goodPassword, Username: username}, "")
	if reg.status != 201 {
		t.Fatalf("register = %d %s", reg.status, reg.body)
	}
	call(t, r.h, "POST", "/v1/auth/register", creds{Email: s.newEmail(t, "secretdup"), Password: goodPassword, Username: username}, "")
	call(t, down.h, "POST", "/v1/auth/register", creds{Email: downEmail, Password: goodPassword}, "")
	call(t, down.h, "POST", "/v1/auth/login", creds{Email: downEmail, Password: wrong}, "")
	login := call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: goodPassword}, "")
	call(t, r.h, "POST", "/v1/auth/login", creds{Email: email, Password: wrong}, "")
	migrated := call(t, r.h, "POST", "/v1/auth/login", creds{Email: legacyEmail, Password: goodPassword}, "")
	if migrated.status != 200 {
		t.Fatalf("legacy login = %d %s", migrated.status, migrated.body)
	}
	refreshed := call(t, r.h, "POST", "/v1/auth/refresh", map[string]string{"refreshToken": login.str(t, "refreshToken")}, "")
	call(t, r.h, "POST", "/v1/auth/refresh", map[string]string{"refreshToken": "not-a-token-" + goodPassword}, "")
	call(t, r.h, "GET", "/v1/auth/me", nil, login.str(t, "idToken"))
	call(t, r.h, "GET", "/v1/auth/me", nil, "garbage."+goodPassword)
	call(t, r.h, "POST", "/v1/auth/logout", nil, refreshed.str(t, "idToken"))
	call(t, r.h, "GET", "/v1/auth/me", nil, refreshed.str(t, "idToken"))
	for _, a := range []answer{reg, login, migrated, refreshed} {
		secrets = append(secrets, a.str(t, "idToken"), a.str(t, "refreshToken"))
	}

	entries := append(r.logs.All(), down.logs.All()...)
	if down.logs.Len() == 0 {
		t.Fatal("the replica without a database logged nothing; the test would prove nothing about error logs")
	}
	for _, e := range entries {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("log line %q contains a secret (%.12s...)", line, s)
			}
		}
	}
}

// BenchmarkLogin measures a login against the Auth Emulator and
// PostgreSQL on this host: through Firebase, through a lazy migration of a
// legacy account (bcrypt at the default cost, 10), and refused (unknown
// email or wrong password: these two should take the same time).
//
//	go test -run '^$' -bench Login -benchtime 100x ./proxy/authapi
func BenchmarkLogin(b *testing.B) {
	s := testServices(b)
	schema := s.testSchema(b)
	r := s.newReplica(b, replicaOpts{schema: schema, quiet: true, config: func(c *Config) { c.LegacyPasswords.Cost = defaultBcryptCost }})
	fbEmail := s.newEmail(b, "bench")
	if a := call(b, r.h, "POST", "/v1/auth/register", creds{Email: fbEmail, Password: goodPassword}, ""); a.status != 201 {
		b.Fatalf("register = %d %s", a.status, a.body)
	}
	legacyEmail := s.newEmail(b, "benchlegacy")
	s.legacyUser(b, schema, legacyEmail, goodPassword, true, defaultBcryptCost)
	login := func(b *testing.B, c creds, want int) {
		if a := call(b, r.h, "POST", "/v1/auth/login", c, ""); a.status != want {
			b.Fatalf("login = %d %s, want %d", a.status, a.body, want)
		}
	}
	b.Run("firebase", func(b *testing.B) {
		for b.Loop() {
			login(b, creds{Email: fbEmail, Password: goodPassword}, 200)
		}
	})
	b.Run("legacy_migration", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			email := s.newEmail(b, "benchmove")
			s.legacyUser(b, schema, email, goodPassword, true, defaultBcryptCost)
			b.StartTimer()
			login(b, creds{Email: email, Password: goodPassword}, 200)
		}
	})
	b.Run("refused/unknown_email", func(b *testing.B) {
		email := s.newEmail(b, "benchnobody")
		for b.Loop() {
			login(b, creds{Email: email, Password: "wrong password"}, 401)
		}
	})
	b.Run("refused/wrong_password_firebase", func(b *testing.B) {
		for b.Loop() {
			login(b, creds{Email: fbEmail, Password: "wrong password"}, 401)
		}
	})
	b.Run("refused/wrong_password_legacy", func(b *testing.B) {
		for b.Loop() {
			login(b, creds{Email: legacyEmail, Password: "wrong password"}, 401)
		}
	})
}

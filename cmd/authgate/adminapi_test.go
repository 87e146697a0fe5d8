package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"
)

const adminTestSecret = "admin-secret-0123456789abcdef-0123456789abcdef"

// firebaseConfig turns Firebase (emulator mode) and federation on.
const firebaseConfig = minimalConfig + `
  firebase:
    enabled: true
    project_id: demo-authgate
    emulator: true
federation:
  enabled: true
  database_url: postgres://postgres@127.0.0.1:1/none
`

// federationOnly turns federation on, without Firebase.
const federationOnly = "federation:\n  enabled: true\n  database_url: postgres://x@127.0.0.1:1/none\n"

func TestAdminAPIAndWorkerConfig(t *testing.T) {
	legacySecret := writeFile(t, "legacy", "legacy-secret-0123456789abcdef0123456789")
	adminSecret := writeFile(t, "admin", adminTestSecret+"\n")
	base := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + legacySecret}
	tests := []struct {
		name     string
		giveYAML string
		giveEnv  []string
		want     string // a problem; "" for none
	}{
		{name: "secret from the environment", giveYAML: firebaseConfig,
			giveEnv: []string{"AUTHGATE_SERVER_ADMIN_API_SECRET=" + adminTestSecret}},
		{name: "secret file from the environment, worker on", giveYAML: firebaseConfig,
			giveEnv: []string{"AUTHGATE_SERVER_ADMIN_API_SECRET_FILE=" + adminSecret, "AUTHGATE_FEDERATION_WORKER_ENABLED=true"}},
		{name: "short secret", giveYAML: firebaseConfig, giveEnv: []string{"AUTHGATE_SERVER_ADMIN_API_SECRET=s3cr3t-short"},
			want: "server.admin.api_secret: 12 bytes is too short"},
		{name: "secret without federation", giveYAML: minimalConfig, giveEnv: []string{"AUTHGATE_SERVER_ADMIN_API_SECRET_FILE=" + adminSecret},
			want: "server.admin.api_secret_file: the admin API manages the user table and needs federation.enabled"},
		{name: "secret with federation, without firebase", giveYAML: minimalConfig + federationOnly,
			giveEnv: []string{"AUTHGATE_SERVER_ADMIN_API_SECRET_FILE=" + adminSecret}},
		{name: "idempotency_ttl", giveYAML: firebaseConfig, giveEnv: []string{"AUTHGATE_FEDERATION_IDEMPOTENCY_TTL=10s"},
			want: "federation.idempotency_ttl: 10s is outside 1m0s..720h0m0s"},
		{name: "worker without firebase", giveYAML: minimalConfig + federationOnly + "  worker:\n    enabled: true\n",
			want: "federation.worker.enabled: needs verify.firebase.enabled"},
		{name: "worker key", giveYAML: firebaseConfig, giveEnv: []string{"AUTHGATE_FEDERATION_WORKER_ENABLED=true", "AUTHGATE_FEDERATION_WORKER_BATCH_SIZE=0", "AUTHGATE_FEDERATION_WORKER_MAX_ATTEMPTS=1000"},
			want: "federation.worker.max_attempts: must be between 1 and 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(writeFile(t, "c.yaml", tt.giveYAML), append(base, tt.giveEnv...))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("loadConfig: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("loadConfig = %v, want a problem %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("problem %q shows the secret", err)
			}
			for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v %#v", cfg, cfg), fmt.Sprint(cfg.Server.Admin)} {
				if strings.Contains(s, adminTestSecret[:20]) {
					t.Errorf("formatted config shows the admin secret: %s", s)
				}
			}
		})
	}
}

// emulatorClient returns an Admin SDK client of the Auth Emulator, or skips
// when FIREBASE_AUTH_EMULATOR_HOST is unset; set but not answering fails.
func emulatorClient(t *testing.T) *auth.Client {
	t.Helper()
	host := os.Getenv("FIREBASE_AUTH_EMULATOR_HOST")
	if host == "" || testing.Short() {
		t.Skip("FIREBASE_AUTH_EMULATOR_HOST not set; skipping Firebase Auth Emulator test (scripts/firebase-emulator.sh start)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		t.Fatalf("FIREBASE_AUTH_EMULATOR_HOST=%s is set but the Auth Emulator does not answer: %v", host, err)
	}
	conn.Close()
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: "demo-authgate"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := app.Auth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// TestAdminAPILinksEndToEnd wires authgate with federation, Firebase (the
// Auth Emulator) and an admin secret, and links a legacy account through
// POST /admin/users/{id}/link on the admin handler.
func TestAdminAPILinksEndToEnd(t *testing.T) {
	dbURL := testDatabaseURL(t)
	client := emulatorClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	uid := "admin-api-" + strings.ToLower(rand.Text())
	if _, err := client.CreateUser(ctx, (&auth.UserToCreate{}).UID(uid)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.DeleteUser(context.Background(), uid) })

	schema := testSchema(t, dbURL, "authgate_admin")
	legacySecret := writeFile(t, "legacy", "legacy-secret-0123456789abcdef0123456789")
	path := writeFile(t, "c.yaml", strings.Replace(firebaseConfig, "  database_url: postgres://postgres@127.0.0.1:1/none\n",
		"  schema: "+schema+"\n  worker:\n    enabled: true\n", 1))
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + legacySecret, "AUTHGATE_FEDERATION_DATABASE_URL=" + dbURL,
		"AUTHGATE_SERVER_ADMIN_API_SECRET_FILE=" + writeFile(t, "admin", adminTestSecret+"\n")}
	var stderr strings.Builder
	if err := run(ctx, []string{"migrate", "--config", path}, env, &strings.Builder{}, &stderr); err != nil {
		t.Fatalf("authgate migrate: %v\n%s", err, stderr.String())
	}
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var id string
	if err := conn.QueryRow(ctx, "INSERT INTO "+pgx.Identifier{schema, "users"}.Sanitize()+" (email) VALUES ('legacy@example.test') RETURNING id::text").Scan(&id); err != nil {
		t.Fatal(err)
	}

	link := func(auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/admin/users/"+id+"/link", strings.NewReader(`{"firebase_uid": "`+uid+`"}`))
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		a.admin.ServeHTTP(w, r)
		return w
	}
	if w := link("Bearer wrong"); w.Code != http.StatusUnauthorized {
		t.Errorf("link with a wrong secret: status %d, want 401", w.Code)
	}
	w := link("Bearer " + adminTestSecret)
	if w.Code != http.StatusOK {
		t.Fatalf("link: status %d, want 200; body %s", w.Code, w.Body)
	}
	var got struct{ ID, FirebaseUID, Email, FederationStatus string }
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != id || got.FirebaseUID != uid || got.Email != "legacy@example.test" || got.FederationStatus != "active" {
		t.Errorf("link answer = %+v, want the account linked to %s", got, uid)
	}
	var stored string
	if err := conn.QueryRow(ctx, "SELECT coalesce(firebase_uid, '') FROM "+pgx.Identifier{schema, "users"}.Sanitize()+" WHERE id = $1", id).Scan(&stored); err != nil || stored != uid {
		t.Errorf("stored firebase_uid = %q, %v, want %s", stored, err, uid)
	}
	if w := link("Bearer " + adminTestSecret); w.Code != http.StatusOK {
		t.Errorf("link again: status %d, want 200 (idempotent)", w.Code)
	}

	// A failed federation, retried at once: the Firebase user with the
	// account's email has verified it, so the account is linked to it.
	lateUID := "admin-retry-" + strings.ToLower(rand.Text())
	lateEmail := lateUID + "@example.test"
	if _, err := client.CreateUser(ctx, (&auth.UserToCreate{}).UID(lateUID).Email(lateEmail).EmailVerified(true)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.DeleteUser(context.Background(), lateUID) })
	var failedID string
	if err := conn.QueryRow(ctx, "INSERT INTO "+pgx.Identifier{schema, "users"}.Sanitize()+
		" (email, federation_status, sync_attempts) VALUES ($1, 'failed', 1) RETURNING id::text", lateEmail).Scan(&failedID); err != nil {
		t.Fatal(err)
	}
	retry := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/admin/users/"+failedID+"/federation/retry", nil)
		r.Header.Set("Authorization", "Bearer "+adminTestSecret)
		w := httptest.NewRecorder()
		a.admin.ServeHTTP(w, r)
		return w
	}
	w = retry()
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"result":"linked"`) || !strings.Contains(w.Body.String(), `"firebaseUid":"`+lateUID+`"`) {
		t.Errorf("retry = %d %s, want 200, linked to %s", w.Code, w.Body, lateUID)
	}
	if w := retry(); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "federation_not_failed") {
		t.Errorf("retry again = %d %s, want 409 federation_not_failed", w.Code, w.Body)
	}
}

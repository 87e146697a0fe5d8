package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/secret"
	"github.com/authgate/authgate/internal/usage"
)

type fakeCounter struct {
	gotColumn string
	err       error
}

func (f *fakeCounter) MigrationCounts(_ context.Context, col string) (federation.MigrationCounts, error) {
	f.gotColumn = col
	c := federation.MigrationCounts{Users: 10, Linked: 7, LegacyOnly: 3}
	if col != "" {
		n := int64(2)
		c.LegacyWithPasswordHash = &n
	}
	return c, f.err
}

type fakeStats struct {
	st  usage.Stats
	err error
}

func (f fakeStats) Stats(context.Context, bool) (usage.Stats, error) { return f.st, f.err }

func TestLegacyRoutes(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	rs := []RouteConfig{
		{Name: "allow", Path: "/a"},
		{Name: "warn", Path: "/w", Legacy: LegacyWarn, LegacySunset: "2026-06-01T00:00:01Z"},
		{Name: "deny", Path: "/d", Legacy: LegacyDeny},
		{Name: "past", Path: "/p", Legacy: LegacyWarn, LegacySunset: "2026-06-01T00:00:00Z"},
		{Name: "firebase-only", Path: "/f", Require: Requirements{Provider: []string{"firebase"}}},
		{Name: "legacy-too", Path: "/l", Require: Requirements{Provider: []string{"firebase", "legacy"}}},
		{Name: "blocked", Path: "/b", Access: AccessDeny},
		{Name: "public", Path: "/pub", Access: AccessPublic},
	}
	var got []string
	for _, r := range LegacyRoutes(rs, now) {
		got = append(got, r.Name+":"+string(r.Policy))
	}
	want := "allow:allow warn:warn legacy-too:allow public:allow"
	if strings.Join(got, " ") != want {
		t.Errorf("LegacyRoutes = %v, want %s", got, want)
	}
}

func TestAdminMigration(t *testing.T) {
	shared := usage.Stats{Shared: true, Windows: []usage.Window{{Days: 1, Legacy: usage.Counts{Users: 4, Requests: 9}}}}
	tests := []struct {
		name       string
		giveMethod string
		giveAuth   bool
		giveColumn string
		giveStats  UsageStats
		giveErr    error
		wantCode   int
		wantBody   []string
	}{
		{name: "no secret", giveMethod: "GET", wantCode: 401},
		{name: "post", giveMethod: "POST", giveAuth: true, wantCode: 405},
		{name: "report", giveMethod: "GET", giveAuth: true, giveColumn: "password_hash", giveStats: fakeStats{st: shared}, wantCode: 200,
			wantBody: []string{`"total":10`, `"linked_to_firebase":7`, `"legacy_only":3`, `"legacy_with_password_hash":2`, `"shared":true`, `"legacy":{"users":4,"requests":9}`, `"legacy_routes":[{"name":"default","legacy":"allow"}]`}},
		{name: "no password column", giveMethod: "GET", giveAuth: true, wantCode: 200,
			wantBody: []string{`"legacy_with_password_hash":null`, `"note":"legacy_with_password_hash needs auth_api.legacy_passwords`, `"telemetry":null`, `"telemetry_note":"usage.enabled is false"`}},
		{name: "redis down", giveMethod: "GET", giveAuth: true, giveStats: fakeStats{err: errors.New("redis unavailable")}, wantCode: 200,
			wantBody: []string{`"telemetry":null`, `"telemetry_note":"telemetry unavailable: redis unavailable"`}},
		{name: "postgres down", giveMethod: "GET", giveAuth: true, giveErr: federation.ErrUnavailable, wantCode: 503, wantBody: []string{`"code":"unavailable"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Migration{Users: &fakeCounter{err: tt.giveErr}, Usage: tt.giveStats, PasswordColumn: tt.giveColumn, LegacyEnabled: true,
				Routes: []RouteConfig{{Name: "default", Path: "/"}}}
			cfg := AdminConfig{APISecret: secret.Secret(testAdminSecret), CheckTimeout: time.Second}
			api, err := NewAdminAPI(cfg, AdminBackends{Users: &fakeAdminUsers{}, Migration: m}, zaptest.NewLogger(t), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(tt.giveMethod, "/admin/migration", nil)
			if tt.giveAuth {
				r.Header.Set("Authorization", "Bearer "+testAdminSecret)
			}
			w := httptest.NewRecorder()
			api.ServeHTTP(w, r)
			if w.Code != tt.wantCode {
				t.Errorf("status = %d, want %d (%s)", w.Code, tt.wantCode, w.Body)
			}
			for _, want := range tt.wantBody {
				if !strings.Contains(w.Body.String(), want) {
					t.Errorf("body lacks %s:\n%s", want, w.Body)
				}
			}
			if w.Code == 200 && !json.Valid(w.Body.Bytes()) {
				t.Errorf("body is not JSON: %s", w.Body)
			}
		})
	}
}

// Without a Migration the endpoint does not exist.
func TestAdminMigrationOff(t *testing.T) {
	cfg := AdminConfig{APISecret: secret.Secret(testAdminSecret), CheckTimeout: time.Second}
	api, err := NewAdminAPI(cfg, AdminBackends{Users: &fakeAdminUsers{}}, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/admin/migration", nil)
	r.Header.Set("Authorization", "Bearer "+testAdminSecret)
	w := httptest.NewRecorder()
	api.ServeHTTP(w, r)
	if w.Code != http.StatusNotFound {
		t.Errorf("status = %d, want 404", w.Code)
	}
}

// TestMigrationRules checks that a report reads the rules of the moment
// when Rules is set, as after a reload.
func TestMigrationRules(t *testing.T) {
	routes := []RouteConfig{{Name: "old", Path: "/"}}
	m := &Migration{Users: &fakeCounter{}, LegacyEnabled: true, Routes: routes,
		Rules: func() (bool, []RouteConfig) { return true, []RouteConfig{{Name: "reloaded", Path: "/"}} }}
	rep, err := m.Report(t.Context())
	if err != nil {
		t.Fatalf("Report() error = %v", err)
	}
	if len(rep.LegacyRoutes) != 1 || rep.LegacyRoutes[0].Name != "reloaded" {
		t.Errorf("Report().LegacyRoutes = %+v, want the reloaded route only", rep.LegacyRoutes)
	}
}

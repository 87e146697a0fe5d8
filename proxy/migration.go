package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/usage"
	"github.com/authgate/authgate/verify"
)

// MigrationCounter counts the user table's progress: a *federation.Repo.
type MigrationCounter interface {
	MigrationCounts(ctx context.Context, hashColumn string) (federation.MigrationCounts, error)
}

// UsageStats reads the migration telemetry: a *usage.Recorder.
type UsageStats interface {
	Stats(ctx context.Context, routes bool) (usage.Stats, error)
}

// Migration assembles the migration report from the user table, the
// telemetry and the route rules. It is safe for concurrent use.
type Migration struct {
	// Users is required.
	Users MigrationCounter
	// Usage is nil when the telemetry is off or not readable here;
	// UsageNote then says why ("" = "usage.enabled is false").
	Usage     UsageStats
	UsageNote string
	// PasswordColumn is auth_api.legacy_passwords.column when the lazy
	// migration of passwords is on, else "".
	PasswordColumn string
	// LegacyEnabled is verify.legacy.enabled.
	LegacyEnabled bool
	// Routes are the route rules.
	Routes []RouteConfig
	// Rules, when set, gives verify.legacy.enabled and the route rules at
	// each report, in place of LegacyEnabled and Routes: those of a
	// reloaded configuration.
	Rules func() (legacyEnabled bool, routes []RouteConfig)
	// Now is time.Now unless a test sets it.
	Now func() time.Time
}

// MigrationUsers are the user table's numbers.
type MigrationUsers struct {
	federation.MigrationCounts
	// Note says why a number is null.
	Note string `json:"note,omitempty"`
}

// LegacyRoute is a route that still admits legacy tokens.
type LegacyRoute struct {
	Name   string       `json:"name"`
	Policy LegacyPolicy `json:"legacy"`
	Sunset string       `json:"legacy_sunset,omitempty"`
}

// MigrationReport answers "how far is the move off the legacy service?".
type MigrationReport struct {
	GeneratedAt time.Time      `json:"generated_at"`
	Users       MigrationUsers `json:"users"`
	// Telemetry is nil when usage.enabled is false (TelemetryNote says).
	Telemetry     *usage.Stats `json:"telemetry"`
	TelemetryNote string       `json:"telemetry_note,omitempty"`
	// LegacyVerification is verify.legacy.enabled.
	LegacyVerification bool `json:"legacy_verification"`
	// LegacyRoutes are the routes on which a legacy token would be
	// admitted now: access not deny, legacy not deny and not past its
	// sunset, and require.provider empty or naming legacy. Empty when
	// legacy verification is off.
	LegacyRoutes []LegacyRoute `json:"legacy_routes"`
}

// Report assembles the report: one query on the user table, one Redis
// round trip.
func (m *Migration) Report(ctx context.Context) (MigrationReport, error) {
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	legacyEnabled, routes := m.LegacyEnabled, m.Routes
	if m.Rules != nil {
		legacyEnabled, routes = m.Rules()
	}
	rep := MigrationReport{GeneratedAt: now().UTC().Truncate(time.Second), LegacyVerification: legacyEnabled, LegacyRoutes: []LegacyRoute{}}
	counts, err := m.Users.MigrationCounts(ctx, m.PasswordColumn)
	if err != nil {
		return MigrationReport{}, fmt.Errorf("migration report: %w", err)
	}
	rep.Users.MigrationCounts = counts
	if m.PasswordColumn == "" {
		rep.Users.Note = "legacy_with_password_hash needs auth_api.legacy_passwords, which names the hash column"
	}
	if m.Usage == nil {
		rep.TelemetryNote = m.UsageNote
		if rep.TelemetryNote == "" {
			rep.TelemetryNote = "usage.enabled is false"
		}
	} else {
		st, err := m.Usage.Stats(ctx, true)
		switch {
		case err == nil:
			rep.Telemetry = &st
			if !st.Shared {
				rep.TelemetryNote = "no Redis: these are this replica's own counts since it started"
			}
		case errors.Is(err, context.Canceled):
			return MigrationReport{}, err
		default:
			// The user table's numbers are still worth having.
			rep.TelemetryNote = "telemetry unavailable: " + err.Error()
		}
	}
	if legacyEnabled {
		rep.LegacyRoutes = LegacyRoutes(routes, now())
	}
	return rep, nil
}

// LegacyRoutes returns the routes that admit legacy tokens at now.
func LegacyRoutes(rs []RouteConfig, now time.Time) []LegacyRoute {
	out := []LegacyRoute{}
	for _, r := range rs {
		if r.Access == AccessDeny || r.Legacy == LegacyDeny {
			continue
		}
		if len(r.Require.Provider) > 0 && !slices.Contains(r.Require.Provider, string(verify.ProviderLegacy)) {
			continue
		}
		if r.LegacySunset != "" {
			if s, err := time.Parse(time.RFC3339, r.LegacySunset); err == nil && !now.Before(s) {
				continue
			}
		}
		p := r.Legacy
		if p == "" {
			p = LegacyAllow
		}
		out = append(out, LegacyRoute{Name: r.Name, Policy: p, Sunset: r.LegacySunset})
	}
	return out
}

// migration answers GET /admin/migration.
func (a *AdminAPI) migration(w http.ResponseWriter, r *http.Request) {
	rep, err := a.b.Migration.Report(r.Context())
	a.read(w, r, jsonAnswer(http.StatusOK, &rep), err)
}

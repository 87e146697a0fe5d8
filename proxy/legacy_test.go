package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify"
)

// providerVerifier answers the tokens "legacy" and "firebase" with an
// identity of that provider.
type providerVerifier struct{}

func (providerVerifier) Verify(_ context.Context, tok string) (verify.Identity, error) {
	switch tok {
	case "legacy":
		return verify.Identity{Provider: verify.ProviderLegacy, Subject: "42"}, nil
	case "firebase":
		return verify.Identity{Provider: verify.ProviderFirebase, Subject: "uid-1", FirebaseUID: "uid-1"}, nil
	}
	return verify.Identity{}, verify.ErrInvalid
}

var (
	legacyLoaded = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	legacyNow    = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
)

func legacyConfig(upstream string) Config {
	cfg := DefaultConfig()
	cfg.Upstream = upstream
	cfg.TrustedProxies = []string{"127.0.0.1/32"}
	cfg.LegacyMigrationURL = "https://example.test/move"
	cfg.Routes = []RouteConfig{
		{Name: "allow", Path: "/allow"},
		{Name: "warn", Path: "/warn", Legacy: LegacyWarn, LegacyDeprecated: "2026-01-01T00:00:00Z"},
		{Name: "warn-loaded", Path: "/warn-loaded", Legacy: LegacyWarn},
		{Name: "deny", Path: "/deny", Legacy: LegacyDeny},
		{Name: "sunset-past", Path: "/sunset-past", Legacy: LegacyWarn, LegacySunset: "2026-06-01T00:00:00Z"},
		{Name: "sunset-future", Path: "/sunset-future", Legacy: LegacyWarn, LegacySunset: "2027-06-30T00:00:00Z"},
		{Name: "sunset-allow", Path: "/sunset-allow", LegacySunset: "2026-06-01T12:00:00Z"},
		{Name: "public-deny", Path: "/public-deny", Access: AccessPublic, Legacy: LegacyDeny},
	}
	return cfg
}

func newLegacyHandler(t *testing.T, cfg Config, reg prometheus.Registerer) *Handler {
	t.Helper()
	clock := legacyLoaded
	h, err := New(cfg, providerVerifier{}, zaptest.NewLogger(t), reg, WithClock(func() time.Time { return clock }))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	clock = legacyNow // requests run three months after the rules were loaded
	return h
}

func TestLegacyPolicy(t *testing.T) {
	up := newUpstream(t, nil)
	h := newLegacyHandler(t, legacyConfig(up.URL), nil)
	const (
		depSet    = "@1767225600" // 2026-01-01
		depLoaded = "@1772323200" // 2026-03-01, when the rules were loaded
		link      = `<https://example.test/move>; rel="deprecation"`
	)
	tests := []struct {
		name            string
		givePath        string
		giveToken       string
		wantStatus      int
		wantDeprecation string
		wantSunset      string
		wantWWW         string
	}{
		{name: "allow legacy", givePath: "/allow", giveToken: "legacy", wantStatus: 200},
		{name: "allow firebase", givePath: "/allow", giveToken: "firebase", wantStatus: 200},
		{name: "warn legacy", givePath: "/warn", giveToken: "legacy", wantStatus: 200, wantDeprecation: depSet},
		{name: "warn legacy, deprecated when loaded", givePath: "/warn-loaded", giveToken: "legacy", wantStatus: 200, wantDeprecation: depLoaded},
		{name: "warn firebase", givePath: "/warn", giveToken: "firebase", wantStatus: 200},
		{name: "deny legacy", givePath: "/deny", giveToken: "legacy", wantStatus: 401, wantWWW: wwwAuthLegacy[0]},
		{name: "deny firebase", givePath: "/deny", giveToken: "firebase", wantStatus: 200},
		{name: "sunset past legacy", givePath: "/sunset-past", giveToken: "legacy", wantStatus: 401, wantWWW: wwwAuthLegacy[0]},
		{name: "sunset past firebase", givePath: "/sunset-past", giveToken: "firebase", wantStatus: 200},
		{name: "sunset at this instant legacy", givePath: "/sunset-allow", giveToken: "legacy", wantStatus: 401, wantWWW: wwwAuthLegacy[0]},
		{name: "sunset future legacy", givePath: "/sunset-future", giveToken: "legacy", wantStatus: 200, wantDeprecation: depLoaded, wantSunset: "Wed, 30 Jun 2027 00:00:00 GMT"},
		{name: "sunset future firebase", givePath: "/sunset-future", giveToken: "firebase", wantStatus: 200},
		{name: "public deny anonymous", givePath: "/public-deny", wantStatus: 200},
		{name: "public deny legacy", givePath: "/public-deny", giveToken: "legacy", wantStatus: 401, wantWWW: wwwAuthLegacy[0]},
	}
	for _, tt := range tests {
		for _, mode := range []string{modeProxy, modeForwardAuth} {
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				r := httptest.NewRequest(http.MethodGet, tt.givePath, nil)
				if mode == modeForwardAuth {
					r = httptest.NewRequest(http.MethodGet, "/auth", nil)
					r.Header.Set("X-Forwarded-Uri", tt.givePath)
				}
				if tt.giveToken != "" {
					r.Header.Set("Authorization", "Bearer "+tt.giveToken)
				}
				w := serve(h, r, "127.0.0.1:1234")
				got := w.Result().Header
				if w.Code != tt.wantStatus {
					t.Errorf("status = %d, want %d", w.Code, tt.wantStatus)
				}
				if g := got.Get("Www-Authenticate"); g != tt.wantWWW {
					t.Errorf("WWW-Authenticate = %q, want %q", g, tt.wantWWW)
				}
				if g := got.Get("Deprecation"); g != tt.wantDeprecation {
					t.Errorf("Deprecation = %q, want %q", g, tt.wantDeprecation)
				}
				if g := got.Get("Sunset"); g != tt.wantSunset {
					t.Errorf("Sunset = %q, want %q", g, tt.wantSunset)
				}
				wantLink := ""
				if tt.wantDeprecation != "" {
					wantLink = link
				}
				if g := got.Get("Link"); g != wantLink {
					t.Errorf("Link = %q, want %q", g, wantLink)
				}
			})
		}
	}
}

// Without legacy_migration_url, warn sends no Link header; an upstream's
// own Link survives next to the deprecation one.
func TestLegacyWarnLink(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", `</next>; rel="next"`)
	})
	tests := []struct {
		name     string
		giveURL  string
		wantLink []string
	}{
		{name: "no url", wantLink: []string{`</next>; rel="next"`}},
		{name: "url", giveURL: "https://example.test/move", wantLink: []string{`<https://example.test/move>; rel="deprecation"`, `</next>; rel="next"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := legacyConfig(up.URL)
			cfg.LegacyMigrationURL = tt.giveURL
			h := newLegacyHandler(t, cfg, nil)
			r := httptest.NewRequest(http.MethodGet, "/warn", nil)
			r.Header.Set("Authorization", "Bearer legacy")
			w := serve(h, r, "127.0.0.1:1234")
			if got := w.Result().Header["Link"]; strings.Join(got, "|") != strings.Join(tt.wantLink, "|") {
				t.Errorf("Link = %q, want %q", got, tt.wantLink)
			}
		})
	}
}

func TestLegacyMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newLegacyHandler(t, legacyConfig("builtin:echo"), reg)
	for _, p := range []string{"/allow", "/warn", "/warn", "/deny", "/sunset-past", "/sunset-future"} {
		for _, tok := range []string{"legacy", "firebase"} {
			r := httptest.NewRequest(http.MethodGet, p, nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			serve(h, r, "127.0.0.1:1234")
		}
	}
	tests := []struct {
		giveRoute, givePolicy string
		want                  float64
	}{
		{"allow", "allow", 1}, {"allow", "warn", 0}, {"warn", "warn", 2}, {"deny", "deny", 1},
		{"sunset-past", "deny", 1}, {"sunset-past", "warn", 0}, {"sunset-future", "warn", 1},
		{"public-deny", "deny", 0},
	}
	for _, tt := range tests {
		vec, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := -1.0
		for _, mf := range vec {
			if mf.GetName() != "legacy_requests_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["route"] == tt.giveRoute && l["policy"] == tt.givePolicy {
					got = m.GetCounter().GetValue()
				}
			}
		}
		if got != tt.want {
			t.Errorf("legacy_requests_total{route=%q,policy=%q} = %v, want %v", tt.giveRoute, tt.givePolicy, got, tt.want)
		}
	}
}

func TestLegacyConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*Config)
		wantErr string
	}{
		{name: "valid", give: func(*Config) {}},
		{name: "bad policy", give: func(c *Config) { c.Routes[0].Legacy = "block" }, wantErr: `routes[0].legacy: "block"`},
		{name: "bad sunset", give: func(c *Config) { c.Routes[0].LegacySunset = "2027-06-30" }, wantErr: "routes[0].legacy_sunset"},
		{name: "bad deprecated", give: func(c *Config) { c.Routes[0].LegacyDeprecated = "yesterday" }, wantErr: "routes[0].legacy_deprecated"},
		{name: "sunset before deprecation", give: func(c *Config) {
			c.Routes[1].LegacySunset = "2025-01-01T00:00:00Z"
		}, wantErr: "routes[1].legacy_sunset: 2025-01-01T00:00:00Z is before legacy_deprecated"},
		{name: "bad url", give: func(c *Config) { c.LegacyMigrationURL = "/move" }, wantErr: "legacy_migration_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := legacyConfig("builtin:echo")
			tt.give(&cfg)
			err := cfg.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (err == nil) || !strings.Contains(got, tt.wantErr) {
				t.Errorf("Validate() = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// usageLog is a Usage that keeps what it was told.
type usageLog struct{ got []string }

func (u *usageLog) Record(p verify.Provider, route, user string) {
	u.got = append(u.got, string(p)+" "+route+" "+user)
}

// Every request whose token verified is recorded, refused by the route or
// not; anonymous and invalid ones are not.
func TestUsageRecorded(t *testing.T) {
	u := &usageLog{}
	h, err := New(legacyConfig("builtin:echo"), providerVerifier{}, zaptest.NewLogger(t), nil, WithUsage(u))
	if err != nil {
		t.Fatal(err)
	}
	for _, give := range []struct{ path, token string }{
		{"/allow", "legacy"}, {"/deny", "legacy"}, {"/warn", "firebase"}, {"/public-deny", ""}, {"/allow", "bogus"},
	} {
		r := httptest.NewRequest(http.MethodGet, give.path, nil)
		if give.token != "" {
			r.Header.Set("Authorization", "Bearer "+give.token)
		}
		serve(h, r, "127.0.0.1:1234")
	}
	want := []string{"legacy allow 42", "legacy deny 42", "firebase warn uid-1"}
	if strings.Join(u.got, "|") != strings.Join(want, "|") {
		t.Errorf("recorded %q, want %q", u.got, want)
	}
}

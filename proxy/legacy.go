package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authgate/authgate/verify"
)

// LegacyPolicy is what a route does with legacy tokens, on the way to
// turning them off.
type LegacyPolicy string

// Legacy token policies of a route.
const (
	// LegacyAllow admits legacy tokens as before (the default; "" means it).
	LegacyAllow LegacyPolicy = "allow"
	// LegacyWarn admits them and marks the answer with Deprecation,
	// Sunset and Link headers.
	LegacyWarn LegacyPolicy = "warn"
	// LegacyDeny refuses them with 401.
	LegacyDeny LegacyPolicy = "deny"
)

// errLegacyRefused: a legacy token on a route that no longer admits them.
var errLegacyRefused = errors.New("legacy token no longer accepted")

var wwwAuthLegacy = []string{`Bearer error="invalid_token", error_description="legacy token no longer accepted"`}

// legacyPolicies are the metric's policy label values.
var legacyPolicies = [...]LegacyPolicy{LegacyAllow, LegacyWarn, LegacyDeny}

func legacyIndex(p LegacyPolicy) int {
	switch p {
	case LegacyWarn:
		return 1
	case LegacyDeny:
		return 2
	default:
		return 0
	}
}

// routeLegacy is a route's compiled legacy policy.
type routeLegacy struct {
	policy LegacyPolicy // never ""
	sunset time.Time    // zero: none
	// deprecation, sunsetHdr and link are the header values warn adds;
	// nil when not sent.
	deprecation, sunsetHdr, link []string
	// count[policy] counts legacy-authenticated requests.
	count [len(legacyPolicies)]prometheus.Counter
	// loaded is when the route's rules were first loaded.
	loaded time.Time
}

// validateLegacy checks the legacy keys of route p.
func validateLegacy(p string, r RouteConfig) []error {
	var errs []error
	switch r.Legacy {
	case "", LegacyAllow, LegacyWarn, LegacyDeny:
	default:
		errs = append(errs, fmt.Errorf("%s.legacy: %q is not one of allow, warn, deny", p, r.Legacy))
	}
	var dep, sun time.Time
	var err error
	if r.LegacyDeprecated != "" {
		if dep, err = time.Parse(time.RFC3339, r.LegacyDeprecated); err != nil {
			errs = append(errs, fmt.Errorf("%s.legacy_deprecated: %q is not an RFC 3339 time like 2026-01-01T00:00:00Z", p, r.LegacyDeprecated))
		}
	}
	if r.LegacySunset != "" {
		if sun, err = time.Parse(time.RFC3339, r.LegacySunset); err != nil {
			errs = append(errs, fmt.Errorf("%s.legacy_sunset: %q is not an RFC 3339 time like 2027-06-30T00:00:00Z", p, r.LegacySunset))
		}
	}
	if !dep.IsZero() && !sun.IsZero() && sun.Before(dep) {
		errs = append(errs, fmt.Errorf("%s.legacy_sunset: %s is before legacy_deprecated %s", p, r.LegacySunset, r.LegacyDeprecated))
	}
	return errs
}

func checkMigrationURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("legacy_migration_url: %q must be an absolute http(s) URL or \"\"", s)
	}
	return nil
}

// newLegacyVec makes the legacy_requests_total series and registers
// them with reg, if not nil.
func newLegacyVec(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "legacy_requests_total",
		Help: "Requests authenticated with a legacy token, by route and the legacy policy applied (deny includes sunset routes past their sunset).",
	}, []string{"route", "policy"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			return nil, fmt.Errorf("register legacy metrics: %w", err)
		}
	}
	return vec, nil
}

// compileLegacy builds the routes' legacy policies; loaded is when the
// rules were loaded, the Deprecation date of a warn route without
// legacy_deprecated, unless since has an earlier load of the route's name.
// Config is valid.
func compileLegacy(cfg Config, loaded time.Time, since map[string]time.Time, vec *prometheus.CounterVec) []routeLegacy {
	out := make([]routeLegacy, len(cfg.Routes))
	for i, r := range cfg.Routes {
		l := &out[i]
		l.policy = r.Legacy
		if l.policy == "" {
			l.policy = LegacyAllow
		}
		l.loaded = loaded
		if t, ok := since[r.Name]; ok {
			l.loaded = t
		}
		dep := l.loaded
		if r.LegacyDeprecated != "" {
			dep, _ = time.Parse(time.RFC3339, r.LegacyDeprecated)
		}
		if r.LegacySunset != "" {
			l.sunset, _ = time.Parse(time.RFC3339, r.LegacySunset)
			l.sunsetHdr = []string{l.sunset.UTC().Format(http.TimeFormat)}
			if l.sunset.Before(dep) {
				// Rules loaded after their own sunset: RFC 9745 wants
				// the deprecation no later than the sunset.
				dep = l.sunset
			}
		}
		l.deprecation = []string{"@" + strconv.FormatInt(dep.Unix(), 10)}
		if cfg.LegacyMigrationURL != "" {
			l.link = []string{"<" + cfg.LegacyMigrationURL + `>; rel="deprecation"`}
		}
		for j, p := range legacyPolicies {
			l.count[j] = vec.WithLabelValues(r.Name, string(p))
		}
	}
	return out
}

// admitLegacy applies the route's legacy policy to a verified identity at
// now: an error when the token is refused; otherwise the headers to add
// to the answer (none for allow and for Firebase tokens).
func (l *routeLegacy) admit(id *verify.Identity, now time.Time) (warn bool, err error) {
	if id.Provider != verify.ProviderLegacy {
		return false, nil
	}
	policy := l.policy
	if policy != LegacyDeny && !l.sunset.IsZero() && !now.Before(l.sunset) {
		policy = LegacyDeny
	}
	l.count[legacyIndex(policy)].Inc()
	switch policy {
	case LegacyDeny:
		return false, errLegacyRefused
	case LegacyWarn:
		return true, nil
	}
	return false, nil
}

// setWarning adds the deprecation headers of a warn route to hdr.
func (l *routeLegacy) setWarning(hdr http.Header) {
	hdr["Deprecation"] = l.deprecation
	if l.sunsetHdr != nil {
		hdr["Sunset"] = l.sunsetHdr
	}
	if l.link != nil {
		hdr["Link"] = append(hdr["Link"], l.link...)
	}
}

package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/authgate/authgate/verify"
)

// Access is what a route requires of a request.
type Access string

// Route access levels.
const (
	// AccessAuthenticated needs a valid token (the default).
	AccessAuthenticated Access = "authenticated"
	// AccessPublic needs no token; a token that is present must still be
	// valid, and its identity is passed on.
	AccessPublic Access = "public"
	// AccessDeny refuses every request.
	AccessDeny Access = "deny"
)

// RouteConfig is one route rule. Rules are tried in order; the first whose
// host, method and path match decides. A request no rule matches is denied.
type RouteConfig struct {
	// Name labels the route in logs and metrics. Required, unique.
	Name string `yaml:"name"`
	// Host matches the request host, without port and case-insensitively;
	// "*.example.com" matches any subdomain. Empty matches every host.
	Host string `yaml:"host"`
	// Methods lists the HTTP methods matched; empty matches every method.
	Methods []string `yaml:"methods"`
	// Path is a segment-aware prefix ("/api" matches "/api" and "/api/x",
	// not "/apix") or, when it contains *, ? or [, a glob in which * and ?
	// stay within one segment and a "**" segment spans any number of them.
	// It is matched against the canonical path.
	Path string `yaml:"path"`
	// Access is authenticated (default), public or deny.
	Access Access `yaml:"access"`
	// Require lists claim requirements; unmet requirements give 403.
	Require Requirements `yaml:"require"`
	// Legacy is what the route does with legacy tokens: allow (the
	// default; "" means allow), warn (allow, and add Deprecation, Sunset
	// and Link headers to the answer) or deny (401). Firebase tokens and
	// anonymous requests are never affected.
	Legacy LegacyPolicy `yaml:"legacy"`
	// LegacySunset is an RFC 3339 instant from which legacy tokens on the
	// route are refused as with deny; warn announces it in a Sunset
	// header. "" = none.
	LegacySunset string `yaml:"legacy_sunset"`
	// LegacyDeprecated is the RFC 3339 instant that warn announces in the
	// Deprecation header; not after LegacySunset. "" = the moment the
	// rules were loaded (capped at the sunset).
	LegacyDeprecated string `yaml:"legacy_deprecated"`
	// AssertionAudience is the aud of the signed identity assertion on
	// this route; empty means assertion.audience.
	AssertionAudience string `yaml:"assertion_audience"`
}

// Requirements are conditions on the verified identity.
type Requirements struct {
	// EmailVerified requires the token to say the email is verified.
	EmailVerified bool `yaml:"email_verified"`
	// UserType requires the platform role to be one of these.
	UserType []string `yaml:"user_type"`
	// Provider requires the token's provider (firebase, legacy) to be one
	// of these.
	Provider []string `yaml:"provider"`
	// Claims requires each named claim to equal one of the listed values
	// (compared as strings; a list claim matches if any element does).
	Claims map[string][]string `yaml:"claims"`
}

func (q Requirements) empty() bool {
	return !q.EmailVerified && len(q.UserType) == 0 && len(q.Provider) == 0 && len(q.Claims) == 0
}

// route is a compiled RouteConfig.
type route struct {
	name    string
	host    string // lower case; "" any; leading "*." for suffix match
	methods []string
	prefix  string
	glob    []string // nil unless Path is a glob
	// lowerPrefix and lowerGlob are the pattern in lower case, to find the
	// route a case-insensitive backend would pick.
	lowerPrefix string
	lowerGlob   []string
	access      Access
	require     Requirements
	legacy      routeLegacy
	audience    string // "" for assertion.audience
}

func validateRoutes(rs []RouteConfig) error {
	var errs []error
	if len(rs) == 0 {
		errs = append(errs, errors.New("routes: at least one route is required (a request that matches no route is denied)"))
	}
	names := map[string]bool{}
	for i, r := range rs {
		p := fmt.Sprintf("routes[%d]", i)
		if r.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: must be set", p))
		} else if names[r.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q is used by an earlier route", p, r.Name))
		}
		names[r.Name] = true
		if !strings.HasPrefix(r.Path, "/") {
			errs = append(errs, fmt.Errorf("%s.path: must start with \"/\"", p))
		} else if isGlob(r.Path) {
			for _, seg := range strings.Split(r.Path[1:], "/") {
				if _, err := path.Match(seg, ""); err != nil && seg != "**" {
					errs = append(errs, fmt.Errorf("%s.path: bad glob segment %q", p, seg))
				}
			}
		} else if c, err := canonicalPath(r.Path); err != nil || c != r.Path {
			errs = append(errs, fmt.Errorf("%s.path: %q is not canonical (want %q)", p, r.Path, c))
		}
		switch r.Access {
		case "", AccessAuthenticated, AccessDeny:
		case AccessPublic:
			if !r.Require.empty() {
				errs = append(errs, fmt.Errorf("%s.require: a public route cannot have requirements", p))
			}
		default:
			errs = append(errs, fmt.Errorf("%s.access: %q is not one of authenticated, public, deny", p, r.Access))
		}
		for j, m := range r.Methods {
			if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/") {
				errs = append(errs, fmt.Errorf("%s.methods[%d]: %q is not an upper-case HTTP method", p, j, m))
			}
		}
		if strings.ContainsAny(r.Host, "/ :") || strings.Contains(strings.TrimPrefix(r.Host, "*."), "*") {
			errs = append(errs, fmt.Errorf("%s.host: %q must be a host name, optionally starting with \"*.\"", p, r.Host))
		}
		errs = append(errs, validateLegacy(p, r)...)
		for j, pr := range r.Require.Provider {
			if pr != string(verify.ProviderFirebase) && pr != string(verify.ProviderLegacy) {
				errs = append(errs, fmt.Errorf("%s.require.provider[%d]: %q is not firebase or legacy", p, j, pr))
			}
		}
	}
	return errors.Join(errs...)
}

func compileRoutes(rs []RouteConfig) []route {
	out := make([]route, len(rs))
	for i, r := range rs {
		c := route{
			name:     r.Name,
			host:     strings.ToLower(r.Host),
			methods:  r.Methods,
			access:   r.Access,
			require:  r.Require,
			audience: r.AssertionAudience,
		}
		if c.access == "" {
			c.access = AccessAuthenticated
		}
		if isGlob(r.Path) {
			c.glob = strings.Split(r.Path[1:], "/")
			c.lowerGlob = strings.Split(strings.ToLower(r.Path[1:]), "/")
		} else {
			c.prefix = r.Path
			c.lowerPrefix = strings.ToLower(r.Path)
		}
		out[i] = c
	}
	return out
}

func isGlob(p string) bool { return strings.ContainsAny(p, "*?[") }

// match reports whether the route applies to a request. host may carry a
// port; p is the canonical path. With fold, p must be in lower case and the
// route's lower-case pattern is used.
func (rt *route) match(host, method, p string, fold bool) bool {
	if rt.host != "" && !matchHost(rt.host, host) {
		return false
	}
	if len(rt.methods) > 0 {
		ok := false
		for _, m := range rt.methods {
			if m == method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	switch {
	case rt.glob != nil && fold:
		return matchGlob(rt.lowerGlob, p[1:])
	case rt.glob != nil:
		return matchGlob(rt.glob, p[1:])
	case fold:
		return matchPrefix(rt.lowerPrefix, p)
	default:
		return matchPrefix(rt.prefix, p)
	}
}

func matchPrefix(prefix, p string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || prefix[len(prefix)-1] == '/' || p[len(prefix)] == '/'
}

// matchGlob matches the segments of rest ("a/b/c", the path without its
// leading slash) against pat, walking the string so that no request
// allocates. A "**" pattern segment matches any number of path segments.
func matchGlob(pat []string, rest string) bool { return globSegs(pat, rest, false) }

// globSegs matches pat against the segments left in rest; done reports
// that there are none left (rest "" alone is one empty segment).
func globSegs(pat []string, rest string, done bool) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for {
				if globSegs(pat[1:], rest, done) {
					return true
				}
				if done {
					return false
				}
				if i := strings.IndexByte(rest, '/'); i >= 0 {
					rest = rest[i+1:]
				} else {
					rest, done = "", true
				}
			}
		}
		if done {
			return false
		}
		seg, tail, more := strings.Cut(rest, "/")
		if ok, _ := path.Match(pat[0], seg); !ok {
			return false
		}
		pat = pat[1:]
		if more {
			rest = tail
		} else {
			rest, done = "", true
		}
	}
	return done
}

func matchHost(want, host string) bool {
	host = stripPort(host)
	host = strings.TrimSuffix(host, ".")
	if suffix, ok := strings.CutPrefix(want, "*"); ok {
		return len(host) > len(suffix) && hasSuffixFold(host, suffix)
	}
	return strings.EqualFold(host, want)
}

// stripPort removes a ":port" suffix from a Host value ("[::1]:8080" too)
// without the error allocation of net.SplitHostPort.
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.IndexByte(host[i:], ']') >= 0 {
		return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if strings.Count(host, ":") > 1 && !strings.HasPrefix(host, "[") {
		return host // a bare IPv6 address
	}
	return strings.TrimSuffix(strings.TrimPrefix(host[:i], "["), "]")
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// allows reports whether p meets the route's requirements. user_type is
// the platform role from the user row when federation found one.
func (q *Requirements) allows(p *principal) bool {
	id := &p.id
	if q.EmailVerified && !id.EmailVerified {
		return false
	}
	if len(q.UserType) > 0 && !contains(q.UserType, p.role()) {
		return false
	}
	if len(q.Provider) > 0 && !contains(q.Provider, string(id.Provider)) {
		return false
	}
	for name, allowed := range q.Claims {
		if !claimMatches(id.Claims[name], allowed) {
			return false
		}
	}
	return true
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

func claimMatches(v any, allowed []string) bool {
	switch v := v.(type) {
	case string:
		return contains(allowed, v)
	case json.Number:
		return contains(allowed, v.String())
	case bool:
		if v {
			return contains(allowed, "true")
		}
		return contains(allowed, "false")
	case []any:
		for _, e := range v {
			if claimMatches(e, allowed) {
				return true
			}
		}
	}
	return false
}

// methodOK reports whether m looks like an HTTP method token, so a forged
// X-Forwarded-Method cannot carry anything else into a rule.
func methodOK(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

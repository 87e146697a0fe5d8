package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/internal/ratelimit"
)

// Config configures the HTTP surface of authgate's public listener.
type Config struct {
	// Upstream is the URL requests are proxied to once allowed. Empty turns
	// reverse-proxy mode off (forward-auth and token API only). The value
	// "builtin:echo" serves a development echo upstream in-process.
	Upstream string `yaml:"upstream"`
	// PreserveHost sends the client's Host header to the upstream, as a
	// sidecar's application expects. When false the upstream URL's host is
	// sent. Default true.
	PreserveHost bool `yaml:"preserve_host"`
	// HeaderPrefix is the identity header prefix. Default "X-User-".
	HeaderPrefix string `yaml:"header_prefix"`
	// StripHeaders are other proxies' identity headers, removed from every
	// request in every spelling (case, '_' for '-', repeats) as the
	// prefix's are: header names, and "Prefix-*" patterns for a family.
	// Default: oauth2-proxy's X-Auth-Request-* and X-Forwarded-User family,
	// X-Remote-User and Remote-User with their Email, Groups and Name;
	// empty removes none. An entry that would remove a header authgate or
	// the gateway reads (X-Forwarded-For, -Uri, Authorization, ...) is
	// invalid. Forward-auth cannot remove them from the request the
	// application gets: the gateway must (deploy/).
	StripHeaders []string `yaml:"strip_headers"`
	// TokenCookie is the cookie read when there is no Authorization header.
	// Default "__session" (Firebase Hosting's convention); empty turns
	// cookies off.
	TokenCookie string `yaml:"token_cookie"`
	// TrustedProxies lists CIDRs whose X-Forwarded-*, Forwarded and
	// X-Original-* headers are believed. None by default: forward-auth
	// requests need the gateway's address here.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ForwardAuth configures the endpoint that gateways call.
	ForwardAuth ForwardAuthConfig `yaml:"forward_auth"`
	// TokenAPI configures the original service's /v1/token endpoints.
	TokenAPI TokenAPIConfig `yaml:"token_api"`
	// ExtAuthzGRPC configures Envoy's ext_authz gRPC API, on its own
	// listener.
	ExtAuthzGRPC ExtAuthzGRPCConfig `yaml:"ext_authz_grpc"`
	// Transport bounds the connections to the upstream.
	Transport TransportConfig `yaml:"transport"`
	// Routes are the route rules, first match wins.
	Routes []RouteConfig `yaml:"routes"`
	// LegacyMigrationURL is the page that tells a legacy-token client how
	// to move, sent as Link: <url>; rel="deprecation" by routes with
	// legacy: warn. "" = no Link header.
	LegacyMigrationURL string `yaml:"legacy_migration_url"`
	// Assertion configures the signed identity assertion.
	Assertion AssertionConfig `yaml:"assertion"`
}

// ForwardAuthConfig configures forward-auth mode.
type ForwardAuthConfig struct {
	// Enabled serves forward-auth at Path. Default true.
	Enabled bool `yaml:"enabled"`
	// Path is where gateways send auth subrequests. Default "/auth". Envoy's
	// ext_authz appends the original path to it (path_prefix).
	Path string `yaml:"path"`
}

// ExtAuthzGRPCConfig configures the listener that answers Envoy's ext_authz
// over gRPC (envoy.service.auth.v3.Authorization/Check, with the
// grpc.health.v1 health service), with the decision forward-auth makes.
// The listener is plain gRPC (h2c): run it where only the gateway can reach
// it, or behind the mesh's mTLS; its peer must be in trusted_proxies.
type ExtAuthzGRPCConfig struct {
	// Addr is the listen address, like ":9191". Default "": no listener.
	Addr string `yaml:"addr"`
	// MaxRecvMsgSize bounds one CheckRequest in bytes: the request's
	// headers, and its body when Envoy is told to send it (authgate never
	// reads it). A larger one is refused with RESOURCE_EXHAUSTED, which
	// Envoy treats as an error (failure_mode_allow, status_on_error).
	// Default 1 MiB; 4096..67108864.
	MaxRecvMsgSize int `yaml:"max_recv_msg_size"`
	// MaxConcurrentStreams bounds the Checks in flight on one connection;
	// Envoy opens another connection beyond it. Default 1024; 1..1048576.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// Timeout bounds one Check, on top of the deadline Envoy sends (its
	// grpc_service timeout). A Check that runs out answers 503. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
}

// TokenAPIConfig configures POST {prefix}/verify, POST {prefix}/verify-header
// and GET {prefix}/health.
type TokenAPIConfig struct {
	// Enabled serves the token API. Default true.
	Enabled bool `yaml:"enabled"`
	// Prefix is the path prefix. Default "/v1/token".
	Prefix string `yaml:"prefix"`
	// RateLimit bounds how fast one client may call the token API.
	RateLimit TokenAPIRateLimit `yaml:"rate_limit"`
}

// TokenAPIRateLimit limits POST {prefix}/verify and /verify-header per
// client and per verified identity; a request over either limit gets 429
// with Retry-After. Health checks are not limited. Limits are per replica.
type TokenAPIRateLimit struct {
	// PerIP limits each client address (the peer, or the client named in
	// X-Forwarded-For by a trusted proxy), before any token is read.
	// Default 100 per second (burst: the rate): a backend that verifies
	// its users' tokens through the API from one address may need more.
	PerIP ratelimit.Config `yaml:"per_ip"`
	// PerIdentity limits each verified identity (issuer and subject).
	// Default 10 per second.
	PerIdentity ratelimit.Config `yaml:"per_identity"`
	// MaxKeys bounds the clients and identities tracked, each; idle ones
	// are forgotten first. Default 100000; at least 1.
	MaxKeys int `yaml:"max_keys"`
}

// TransportConfig bounds outbound connections to the upstream.
type TransportConfig struct {
	DialTimeout           time.Duration `yaml:"dial_timeout"`
	TLSHandshakeTimeout   time.Duration `yaml:"tls_handshake_timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	IdleConnTimeout       time.Duration `yaml:"idle_conn_timeout"`
	MaxIdleConnsPerHost   int           `yaml:"max_idle_conns_per_host"`
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		PreserveHost: true,
		HeaderPrefix: "X-User-",
		StripHeaders: slices.Clone(defaultStripHeaders),
		TokenCookie:  "__session",
		ForwardAuth:  ForwardAuthConfig{Enabled: true, Path: "/auth"},
		ExtAuthzGRPC: ExtAuthzGRPCConfig{
			MaxRecvMsgSize:       1 << 20,
			MaxConcurrentStreams: 1024,
			Timeout:              5 * time.Second,
		},
		TokenAPI: TokenAPIConfig{Enabled: true, Prefix: "/v1/token", RateLimit: TokenAPIRateLimit{
			PerIP:       ratelimit.Config{Rate: 100},
			PerIdentity: ratelimit.Config{Rate: 10},
			MaxKeys:     ratelimit.DefaultMaxKeys,
		}},
		Transport: TransportConfig{
			DialTimeout:           5 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   256,
		},
		Assertion: defaultAssertionConfig(),
	}
}

// ClaimNames returns the token claims that route requirements read, sorted:
// the only ones the verifier needs to keep in a cached identity.
func (c Config) ClaimNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range c.Routes {
		for name := range r.Require.Claims {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// upstreamEcho is the in-process development upstream.
const upstreamEcho = "builtin:echo"

// Validate reports every problem, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	if c.Upstream != "" && c.Upstream != upstreamEcho {
		u, err := url.Parse(c.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("upstream: %q must be an absolute http(s) URL without query, or %q", c.Upstream, upstreamEcho))
		}
	}
	if !c.ForwardAuth.Enabled && c.Upstream == "" && !c.TokenAPI.Enabled {
		errs = append(errs, errors.New("upstream: must be set when forward_auth and token_api are both disabled"))
	}
	if p := strings.TrimSpace(c.HeaderPrefix); p == "" || strings.ContainsAny(p, " :\t") || !strings.HasSuffix(p, "-") {
		errs = append(errs, fmt.Errorf("header_prefix: %q must be a header name prefix ending in \"-\"", c.HeaderPrefix))
	}
	for i, s := range c.StripHeaders {
		if err := checkStripHeader(s); err != nil {
			errs = append(errs, fmt.Errorf("strip_headers[%d]: %q %w", i, s, err))
		}
	}
	if strings.ContainsAny(c.TokenCookie, " ;=,\t") {
		errs = append(errs, fmt.Errorf("token_cookie: %q is not a valid cookie name", c.TokenCookie))
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		errs = append(errs, err)
	}
	if c.ForwardAuth.Enabled {
		if err := checkEndpointPath(c.ForwardAuth.Path); err != nil {
			errs = append(errs, fmt.Errorf("forward_auth.path: %w", err))
		}
	}
	if c.TokenAPI.Enabled {
		if err := checkEndpointPath(c.TokenAPI.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("token_api.prefix: %w", err))
		}
		rl := c.TokenAPI.RateLimit
		if err := rl.PerIP.Validate(); err != nil {
			errs = append(errs, configerr.Prefix("token_api.rate_limit.per_ip.", err))
		}
		if err := rl.PerIdentity.Validate(); err != nil {
			errs = append(errs, configerr.Prefix("token_api.rate_limit.per_identity.", err))
		}
		if rl.MaxKeys < 1 {
			errs = append(errs, fmt.Errorf("token_api.rate_limit.max_keys: %d must be at least 1", rl.MaxKeys))
		}
	}
	if err := c.ExtAuthzGRPC.validate(); err != nil {
		errs = append(errs, configerr.Prefix("ext_authz_grpc.", err))
	}
	t := c.Transport
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"dial_timeout", t.DialTimeout}, {"tls_handshake_timeout", t.TLSHandshakeTimeout}, {"response_header_timeout", t.ResponseHeaderTimeout}, {"idle_conn_timeout", t.IdleConnTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("transport.%s: must be positive", d.name))
		}
	}
	if t.MaxIdleConnsPerHost <= 0 {
		errs = append(errs, errors.New("transport.max_idle_conns_per_host: must be positive"))
	}
	if err := checkMigrationURL(c.LegacyMigrationURL); err != nil {
		errs = append(errs, err)
	}
	if err := validateRoutes(c.Routes); err != nil {
		errs = append(errs, err)
	}
	if err := c.Assertion.validate(); err != nil {
		errs = append(errs, err)
	}
	if a := c.Assertion; a.Enabled {
		for _, p := range []struct{ key, path string }{{"forward_auth.path", c.ForwardAuth.Path}, {"token_api.prefix", c.TokenAPI.Prefix}} {
			if p.path != "" && (a.JWKSPath == p.path || strings.HasPrefix(a.JWKSPath, p.path+"/")) {
				errs = append(errs, fmt.Errorf("assertion.jwks_path: %q lies under %s %q", a.JWKSPath, p.key, p.path))
			}
		}
	}
	return errors.Join(errs...)
}

func (c ExtAuthzGRPCConfig) validate() error {
	var errs []error
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("addr: %q is not host:port (empty turns the listener off)", c.Addr))
		}
	}
	if n := c.MaxRecvMsgSize; n < 4<<10 || n > 64<<20 {
		errs = append(errs, fmt.Errorf("max_recv_msg_size: %d is outside 4096..67108864", n))
	}
	if n := c.MaxConcurrentStreams; n < 1 || n > 1<<20 {
		errs = append(errs, fmt.Errorf("max_concurrent_streams: %d is outside 1..1048576", n))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}

// neededHeaders are headers authgate or the gateway in front of it reads,
// which no strip_headers entry may cover.
var neededHeaders = []string{
	"Authorization", "Cookie", "Host", "Connection", "Upgrade", "Content-Length", "Content-Type", "Transfer-Encoding",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Method", "X-Forwarded-Uri",
	"X-Original-Uri", "X-Original-Method", "X-Original-Url", "X-Request-Id", "Traceparent", "Tracestate",
}

// checkStripHeader accepts a header name or a "Prefix-*" pattern that
// leaves every header in neededHeaders alone.
func checkStripHeader(s string) error {
	name, pattern := strings.CutSuffix(s, "*")
	switch {
	case name == "":
		return errors.New("must be a header name or a \"Prefix-*\" pattern")
	case strings.IndexFunc(name, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_')
	}) >= 0:
		return errors.New("must hold only letters, digits, '-' and '_', and '*' only at the end")
	case pattern && !strings.HasSuffix(name, "-") && !strings.HasSuffix(name, "_"):
		return errors.New("must end in \"-*\" when it is a pattern")
	}
	m := newIdentityHeaders("X-User-", []string{s})
	for _, n := range neededHeaders {
		if m.isForeign(n) {
			return fmt.Errorf("would remove %s, which authgate or the gateway needs", n)
		}
	}
	return nil
}

func checkEndpointPath(p string) error {
	if c, err := canonicalPath(p); err != nil || c != p || p == "/" || strings.HasSuffix(p, "/") {
		return fmt.Errorf("%q must be a canonical path like /auth, without trailing slash", p)
	}
	return nil
}

func parsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range cidrs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			// A bare address means that one host.
			a, aerr := netip.ParseAddr(strings.TrimSpace(s))
			if aerr != nil {
				errs = append(errs, fmt.Errorf("trusted_proxies[%d]: %q is not a CIDR or IP address", i, s))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, errors.Join(errs...)
}

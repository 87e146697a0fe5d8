// Package proxy is authgate's HTTP surface: the reverse proxy, the
// forward-auth endpoint that nginx, Traefik, Caddy and Envoy call, the token
// API of the original auth service, route rules, the identity header
// contract, error responses and the admin endpoints.
//
// Every request on the public listener goes through one pipeline: strip any
// client-sent identity header, canonicalise the path, pick the route, extract
// and verify the token, apply the route's policy, then set authgate's own
// identity headers. Only the edges differ between modes.
package proxy

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/ratelimit"
	"github.com/authgate/authgate/verify"
)

// Verifier turns a token into a verified identity.
type Verifier interface {
	Verify(ctx context.Context, token string) (verify.Identity, error)
}

// Users resolves a verified identity to the platform's user row
// (federation): it finds, creates or links it.
type Users interface {
	EnsureUser(ctx context.Context, id verify.Identity) (federation.User, error)
}

// Usage records which provider authenticated a request, for the
// migration telemetry; it must not block.
type Usage interface {
	Record(provider verify.Provider, route, userID string)
}

// Handler serves the public listener. It is safe for concurrent use.
//
// Reload replaces its configuration while it serves: each request loads
// the configuration of the moment once, and finishes under it.
type Handler struct {
	cur  atomic.Pointer[handler]
	vecs *metricVecs
	log  *zap.Logger
	// opts are New's options, which every reload applies first.
	opts []Option
	mu   sync.Mutex // serialises Reload
}

// handler is one configuration of a Handler; it is not changed once
// built.
type handler struct {
	cfg      Config
	verifier Verifier
	users    Users // nil when federation is off
	usage    Usage // nil when the telemetry is off
	log      *zap.Logger
	now      func() time.Time
	ident    identityHeaders
	routes   []route
	// upperPatterns is set when a route path has upper-case letters, so
	// the case-insensitive reading must be checked even for lower-case
	// request paths.
	upperPatterns bool
	trusted       []netip.Prefix
	faPath        string
	apiPath       string
	authPath      string                 // "" when no auth API is mounted
	authAPI       http.Handler           // the auth API, served under authPath
	rp            *httputil.ReverseProxy // nil when there is no upstream
	upstream      http.Handler           // rp, or the echo upstream
	metrics       *metrics
	ids           *requestIDs
	ready         func(ctx context.Context) Readiness
	access        bool
	tracer        trace.Tracer                  // nil when tracing is off
	prop          propagation.TextMapPropagator // set with tracer
	// assert signs the identity assertion; nil when off. jwks serves its
	// keys at jwksPath.
	assert   *asserter
	jwks     http.Handler
	jwksPath string
	keys     *AssertionKeys
	// Token API rate limits; nil when off.
	apiPerIP, apiPerIdentity *ratelimit.Limiter
}

var _ http.Handler = (*Handler)(nil)

// Option adjusts a Handler.
type Option func(*handler)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(h *handler) { h.now = now } }

// WithReadiness makes the token API's health endpoint report the same
// dependency states as the admin listener's /readyz.
func WithReadiness(ready func(ctx context.Context) Readiness) Option {
	return func(h *handler) { h.ready = ready }
}

// WithUsers turns federation on: X-User-Id becomes the platform user id and
// the business fields come from the user row.
func WithUsers(u Users) Option { return func(h *handler) { h.users = u } }

// WithAuthAPI serves h, the auth API (see package authapi), under prefix
// as the request mode auth_api: client-sent identity headers are stripped
// and the request gets its id, access log line and metrics as every other,
// but route rules do not apply, as for the token API. h may read the
// client's address with ClientIP and report its outcome with
// ReportOutcome. prefix must be a canonical path that overlaps neither
// forward_auth.path nor token_api.prefix.
func WithAuthAPI(prefix string, h http.Handler) Option {
	return func(hd *handler) { hd.authPath, hd.authAPI = prefix, h }
}

// WithUsage records every request whose token verified (whatever the
// route then decides) in u.
func WithUsage(u Usage) Option { return func(h *handler) { h.usage = u } }

// WithAssertionKeys gives the keys of the signed identity assertion
// (LoadAssertionKeys, or NewAssertionKeys with an ephemeral key in dev).
// New fails when assertion.enabled is true without them.
func WithAssertionKeys(k AssertionKeys) Option { return func(h *handler) { h.keys = &k } }

// WithAccessLog turns the one-line-per-request access log on or off
// (default on).
func WithAccessLog(on bool) Option { return func(h *handler) { h.access = on } }

// New builds the public handler. reg receives the request metrics; it may be
// nil.
func New(cfg Config, v Verifier, log *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	vecs, err := newMetricVecs(reg)
	if err != nil {
		return nil, err
	}
	hd := &Handler{vecs: vecs, log: log, opts: opts}
	h, err := hd.build(cfg, v, nil, nil)
	if err != nil {
		return nil, err
	}
	hd.cur.Store(h)
	return hd, nil
}

// WithVerifier replaces the verifier New was given, for Reload: a
// verify.Generation, so that a request verifies under the issuers of the
// configuration it started with.
func WithVerifier(v Verifier) Option { return func(h *handler) { h.verifier = v } }

// Reload builds the handler of cfg, with New's options and then opts, and
// swaps it in: requests in flight finish under the configuration they
// started with, new ones get cfg's. The metrics, request ids, rate limiter
// state (while its configuration is unchanged) and the upstream's
// connections (while transport is unchanged) carry over. On an error,
// naming the key at fault, nothing changes.
func (hd *Handler) Reload(cfg Config, opts ...Option) error {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if err := cfg.Validate(); err != nil {
		return err
	}
	prev := hd.cur.Load()
	h, err := hd.build(cfg, prev.verifier, prev, opts)
	if err != nil {
		return err
	}
	hd.cur.Store(h)
	if prev.rp != nil && (h.rp == nil || h.rp.Transport != prev.rp.Transport) {
		// Requests in flight keep their connections; idle ones go.
		prev.rp.Transport.(*http.Transport).CloseIdleConnections()
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (hd *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd.cur.Load().ServeHTTP(w, r)
}

// serveJWKS serves the JWKS of the configuration in use.
func (hd *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if j := hd.cur.Load().jwks; j != nil {
		j.ServeHTTP(w, r)
		return
	}
	http.NotFound(w, r)
}

// build makes the handler of cfg (valid) with verifier v; prev, the
// handler in use, lends what outlives a configuration.
func (hd *Handler) build(cfg Config, v Verifier, prev *handler, opts []Option) (*handler, error) {
	trusted, _ := parsePrefixes(cfg.TrustedProxies)
	strip := cfg.StripHeaders
	if cfg.Assertion.Enabled {
		strip = append(slices.Clone(strip), cfg.Assertion.Header)
	}
	h := &handler{
		cfg:      cfg,
		verifier: v,
		log:      hd.log.Named("proxy"),
		now:      time.Now,
		ident:    newIdentityHeaders(cfg.HeaderPrefix, strip),
		routes:   compileRoutes(cfg.Routes),
		trusted:  trusted,
		ids:      newRequestIDs(),
		access:   true,
	}
	if prev != nil {
		h.ids = prev.ids
	}
	for _, r := range cfg.Routes {
		if strings.ToLower(r.Path) != r.Path {
			h.upperPatterns = true
		}
	}
	if cfg.ForwardAuth.Enabled {
		h.faPath = cfg.ForwardAuth.Path
	}
	if cfg.TokenAPI.Enabled {
		h.apiPath = cfg.TokenAPI.Prefix
		rl := cfg.TokenAPI.RateLimit
		if prev != nil && prev.apiPerIP != nil && prev.cfg.TokenAPI.RateLimit == rl {
			h.apiPerIP, h.apiPerIdentity = prev.apiPerIP, prev.apiPerIdentity
		} else {
			h.apiPerIP = ratelimit.New(rl.PerIP, rl.MaxKeys)
			h.apiPerIdentity = ratelimit.New(rl.PerIdentity, rl.MaxKeys)
		}
	}
	for _, o := range hd.opts {
		o(h)
	}
	for _, o := range opts {
		o(h)
	}
	if err := h.checkAuthPath(); err != nil {
		return nil, err
	}
	if cfg.Assertion.Enabled {
		if h.keys == nil || h.keys.signer == nil {
			return nil, errors.New("assertion.key_files: assertion.enabled is true but no signing key was loaded")
		}
		h.assert = newAsserter(cfg.Assertion, *h.keys)
		h.jwks, h.jwksPath = h.keys.JWKSHandler(), cfg.Assertion.JWKSPath
	}
	switch cfg.Upstream {
	case "":
	case upstreamEcho:
		h.upstream = echoHandler{}
	default:
		var transport *http.Transport
		if prev != nil && prev.rp != nil && prev.cfg.Transport == cfg.Transport {
			transport = prev.rp.Transport.(*http.Transport)
		}
		rp, err := h.newReverseProxy(transport)
		if err != nil {
			return nil, err
		}
		h.rp, h.upstream = rp, rp
	}
	names := make([]string, len(h.routes))
	for i, r := range h.routes {
		names[i] = r.name
	}
	h.metrics = hd.vecs.resolve(names)
	// A route's rules date from when it first appeared.
	since := map[string]time.Time{}
	if prev != nil {
		for _, r := range prev.routes {
			since[r.name] = r.legacy.loaded
		}
	}
	legacy := compileLegacy(cfg, h.now(), since, hd.vecs.legacy)
	for i := range h.routes {
		h.routes[i].legacy = legacy[i]
	}
	if prev != nil {
		return h, nil // warned at start
	}
	if cfg.ForwardAuth.Enabled && len(trusted) == 0 {
		h.log.Warn("forward-auth is enabled but trusted_proxies is empty: every forward-auth request will be refused until the gateway's address is listed")
	}
	if cfg.ExtAuthzGRPC.Addr != "" && len(trusted) == 0 {
		h.log.Warn("ext_authz_grpc.addr is set but trusted_proxies is empty: every Check will be denied until the gateway's address is listed")
	}
	return h, nil
}

// Request modes, as metric and log labels.
const (
	modeProxy       = "proxy"
	modeForwardAuth = "forward_auth"
	modeTokenAPI    = "token_api"
	modeAuthAPI     = "auth_api"
	modeJWKS        = "jwks"
	// modeExtAuthzGRPC is a Check on the ext_authz gRPC listener.
	modeExtAuthzGRPC = "ext_authz_grpc"
)

// outcome is what one request came to, for the access log and metrics.
type outcome struct {
	mode   string
	route  int // index into h.routes, or -1
	status int
	userID string
	path   string // the path policy judged, when known
	err    error
}

// ServeHTTP serves r under h's configuration.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	// Whatever happens next, no client-sent identity header survives.
	h.ident.strip(r.Header)
	reqID := h.ids.get(r.Header.Get(headerRequestID))
	r.Header[headerRequestID] = []string{reqID}
	w.Header()[headerRequestID] = r.Header[headerRequestID]

	out := outcome{route: -1, mode: h.mode(r.URL.Path)}
	var span trace.Span // nil when tracing is off
	if h.tracer != nil {
		r, span = h.startRequest(r, out.mode)
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				if span != nil {
					span.End()
				}
				panic(p)
			}
			h.log.Error("panic serving request", zap.String("request_id", reqID), zap.Any("panic", p), zap.Stack("stack"))
			out.status, out.err = http.StatusInternalServerError, errors.New("panic")
			writeError(w, out.status)
		}
		if span != nil {
			h.endRequest(span, &out)
		}
		h.finish(r.Method, r.URL.Path, reqID, start, &out)
	}()

	switch out.mode {
	case modeForwardAuth:
		h.serveForwardAuth(w, r, &out)
	case modeTokenAPI:
		h.serveTokenAPI(w, r, &out)
	case modeAuthAPI:
		h.serveAuthAPI(w, r, &out)
	case modeJWKS:
		sw := &statusWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
		h.jwks.ServeHTTP(sw, r)
		out.status = cmp.Or(sw.status, http.StatusOK)
	default:
		h.serveProxy(w, r, &out)
	}
}

// mode picks the request mode from the path.
func (h *handler) mode(p string) string {
	switch {
	case h.jwksPath != "" && p == h.jwksPath:
		return modeJWKS
	case h.faPath != "" && (p == h.faPath || strings.HasPrefix(p, h.faPath+"/")):
		return modeForwardAuth
	case h.apiPath != "" && strings.HasPrefix(p, h.apiPath+"/"):
		return modeTokenAPI
	case h.authPath != "" && (p == h.authPath || strings.HasPrefix(p, h.authPath+"/")):
		return modeAuthAPI
	default:
		return modeProxy
	}
}

// request is the original request as policy sees it.
type request struct {
	host, method, path string
}

// principal is who a request is from: the verified token and, with
// federation, the user row.
type principal struct {
	id   verify.Identity
	user federation.User
	// federated is set when the user row lookup ran (even if it served a
	// degraded or unlinked identity without a row).
	federated bool
	// legacyWarn is set when the answer must carry the route's
	// deprecation headers (a legacy token on a warn route).
	legacyWarn bool
}

// decide runs the shared pipeline: route, token (from hdr, the original
// request's headers), verification, user row, policy. It returns the principal and whether there is one (false when
// anonymous or refused); out.status is the status to answer.
func (h *handler) decide(ctx context.Context, hdr http.Header, req request, out *outcome) (principal, bool) {
	out.path = req.path
	route, err := h.matchRoute(req)
	if err != nil {
		out.status, out.err = statusFor(err), err
		return principal{}, false
	}
	out.route = route
	if out.route < 0 {
		out.status, out.err = http.StatusForbidden, errNoRoute
		return principal{}, false
	}
	rt := &h.routes[out.route]
	if rt.access == AccessDeny {
		out.status, out.err = http.StatusForbidden, errDenied
		return principal{}, false
	}
	tok, err := h.extractToken(hdr)
	if err != nil {
		out.status, out.err = statusFor(err), err
		return principal{}, false
	}
	if tok == "" {
		if rt.access == AccessPublic {
			out.status = http.StatusOK
			return principal{}, false
		}
		out.status, out.err = http.StatusUnauthorized, errNoToken
		return principal{}, false
	}
	p, err := h.resolve(ctx, tok)
	out.userID = p.userID()
	if err != nil {
		out.status, out.err = statusFor(err), err
		return principal{}, false
	}
	if h.usage != nil {
		h.usage.Record(p.id.Provider, rt.name, out.userID)
	}
	if p.legacyWarn, err = rt.legacy.admit(&p.id, h.now()); err != nil {
		out.status, out.err = http.StatusUnauthorized, err
		return principal{}, false
	}
	if !rt.require.allows(&p) {
		out.status, out.err = http.StatusForbidden, errForbidden
		return p, false
	}
	out.status = http.StatusOK
	return p, true
}

// resolve verifies the token and, with federation on, finds the user row.
func (h *handler) resolve(ctx context.Context, tok string) (principal, error) {
	id, err := h.verifier.Verify(ctx, tok)
	if err != nil {
		return principal{}, err
	}
	p := principal{id: id}
	if h.users == nil {
		return p, nil
	}
	p.user, err = h.users.EnsureUser(ctx, id)
	p.federated = true
	return p, err
}

// userID is the platform user id when there is a row; the token subject
// when federation is off or degraded; empty for an identity left unlinked
// by policy, which has no platform id (its Firebase uid is in its own
// header).
func (p *principal) userID() string {
	switch {
	case p.user.ID != "":
		return p.user.ID
	case p.federated && p.user.FederationStatus == federation.StatusFailed:
		return ""
	default:
		return p.id.Subject
	}
}

// role is the platform role: the row's, else the token's.
func (p *principal) role() string {
	if p.user.ID != "" && p.user.UserType != "" {
		return p.user.UserType
	}
	return p.id.Role
}

// matchRoute returns the index of the first route that matches req, or -1.
// Some backends read paths case-insensitively (/ADMIN as /admin), others
// do not; when the two readings pick different routes, the request is
// ambiguous and refused, since authgate cannot know which the upstream
// will make.
func (h *handler) matchRoute(req request) (int, error) {
	i := h.firstRoute(req, req.path, false)
	if lower := strings.ToLower(req.path); lower != req.path || h.upperPatterns {
		if j := h.firstRoute(req, lower, true); j != i {
			return -1, errAmbiguousPath
		}
	}
	return i, nil
}

func (h *handler) firstRoute(req request, p string, fold bool) int {
	for i := range h.routes {
		if h.routes[i].match(req.host, req.method, p, fold) {
			return i
		}
	}
	return -1
}

// identityValues maps a principal onto the header slots. An anonymous
// request gets all-empty values.
func identityValues(p *principal, known bool) [numSlots]string {
	var v [numSlots]string
	if !known {
		return v
	}
	id, u := &p.id, &p.user
	v[slotUserID] = p.userID()
	v[slotFirebaseUID] = firstNonEmpty(u.FirebaseUID, id.FirebaseUID)
	v[slotEmail] = firstNonEmpty(u.Email, id.Email)
	v[slotEmailVerified] = strconv.FormatBool(id.EmailVerified)
	v[slotName] = firstNonEmpty(u.Username, id.Name)
	v[slotType] = p.role()
	v[slotProvider] = string(id.Provider)
	switch {
	case !p.federated:
		v[slotFederation] = "disabled" // federation is off
	default:
		v[slotFederation] = string(u.FederationStatus)
	}
	if u.ID != "" {
		v[slotTokenBalance] = strconv.FormatInt(u.TokenBalance, 10)
	}
	return v
}

// setAssertion adds the signed identity assertion to hdr when assertions
// are on: for a principal, signed for the route's audience; for an anonymous
// request, an empty value when full (forward-auth answers) so that a
// gateway copying it replaces a client's.
func (h *handler) setAssertion(hdr http.Header, p *principal, known bool, vals *[numSlots]string, route int, full bool) error {
	if h.assert == nil {
		return nil
	}
	if !known {
		if full {
			hdr[h.assert.header] = emptyValue
		}
		return nil
	}
	aud := h.cfg.Assertion.Audience
	if route >= 0 && h.routes[route].audience != "" {
		aud = h.routes[route].audience
	}
	jws, err := h.assert.assertion(p, vals, aud, h.now())
	if err != nil {
		return err
	}
	hdr[h.assert.header] = jws
	return nil
}

var emptyValue = []string{""}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// peerTrusted reports whether the TCP peer is in TrustedProxies.
func (h *handler) peerTrusted(r *http.Request) bool {
	return len(h.trusted) > 0 && h.trustedAddr(peerAddr(r))
}

// finish records the outcome in the metrics and the access log. path is
// logged when policy judged no path.
func (h *handler) finish(method, path, reqID string, start time.Time, out *outcome) {
	d := h.now().Sub(start)
	route := "none"
	if out.route >= 0 {
		route = h.routes[out.route].name
	}
	h.metrics.observe(out.mode, out.route, out.status, d)
	if !h.access {
		return
	}
	ce := h.log.Check(zap.InfoLevel, "request")
	if ce == nil {
		return
	}
	if out.path != "" {
		path = out.path
	}
	// The fields go into a recycled slice: as a variadic argument they
	// escape to the heap, 512 bytes per request. ce.Write encodes them
	// before it returns (zap's cores keep no reference to the slice).
	fp := accessFields.Get().(*[]zap.Field)
	fields := append((*fp)[:0],
		zap.String("request_id", reqID),
		zap.String("mode", out.mode),
		zap.String("method", method),
		zap.String("path", path),
		zap.String("route", route),
		zap.Int("status", out.status),
		zap.Duration("duration", d),
		zap.String("user_id", out.userID),
	)
	if out.err != nil {
		fields = append(fields, zap.String("reason", reasonFor(out.err)), zap.Error(out.err))
	}
	ce.Write(fields...)
	clear(fields) // drop the references to this request's strings and error
	*fp = fields
	accessFields.Put(fp)
}

// accessFields recycles the access line's field slices.
var accessFields = sync.Pool{New: func() any {
	s := make([]zap.Field, 0, 10)
	return &s
}}

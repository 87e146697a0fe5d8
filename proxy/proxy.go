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
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/verify"
)

// Verifier turns a token into a verified identity.
type Verifier interface {
	Verify(ctx context.Context, token string) (verify.Identity, error)
}

// Handler serves the public listener. It is safe for concurrent use.
type Handler struct {
	cfg      Config
	verifier Verifier
	log      *zap.Logger
	now      func() time.Time
	ident    identityHeaders
	routes   []route
	trusted  []netip.Prefix
	faPath   string
	apiPath  string
	rp       *httputil.ReverseProxy // nil when there is no upstream
	upstream http.Handler           // rp, or the echo upstream
	metrics  *metrics
	ids      *requestIDs
	ready    func(ctx context.Context) Readiness
	access   bool
}

var _ http.Handler = (*Handler)(nil)

// Option adjusts a Handler.
type Option func(*Handler)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(h *Handler) { h.now = now } }

// WithReadiness makes the token API's health endpoint report the same
// dependency states as the admin listener's /readyz.
func WithReadiness(ready func(ctx context.Context) Readiness) Option {
	return func(h *Handler) { h.ready = ready }
}

// WithAccessLog turns the one-line-per-request access log on or off
// (default on).
func WithAccessLog(on bool) Option { return func(h *Handler) { h.access = on } }

// New builds the public handler. reg receives the request metrics; it may be
// nil.
func New(cfg Config, v Verifier, log *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	trusted, _ := parsePrefixes(cfg.TrustedProxies)
	h := &Handler{
		cfg:      cfg,
		verifier: v,
		log:      log.Named("proxy"),
		now:      time.Now,
		ident:    newIdentityHeaders(cfg.HeaderPrefix),
		routes:   compileRoutes(cfg.Routes),
		trusted:  trusted,
		ids:      newRequestIDs(),
		access:   true,
	}
	if cfg.ForwardAuth.Enabled {
		h.faPath = cfg.ForwardAuth.Path
	}
	if cfg.TokenAPI.Enabled {
		h.apiPath = cfg.TokenAPI.Prefix
	}
	for _, o := range opts {
		o(h)
	}
	switch cfg.Upstream {
	case "":
	case upstreamEcho:
		h.upstream = echoHandler{}
	default:
		rp, err := h.newReverseProxy()
		if err != nil {
			return nil, err
		}
		h.rp, h.upstream = rp, rp
	}
	names := make([]string, len(h.routes))
	for i, r := range h.routes {
		names[i] = r.name
	}
	m, err := newMetrics(reg, names)
	if err != nil {
		return nil, err
	}
	h.metrics = m
	if cfg.ForwardAuth.Enabled && len(trusted) == 0 {
		h.log.Warn("forward-auth is enabled but trusted_proxies is empty: every forward-auth request will be refused until the gateway's address is listed")
	}
	return h, nil
}

// Request modes, as metric and log labels.
const (
	modeProxy       = "proxy"
	modeForwardAuth = "forward_auth"
	modeTokenAPI    = "token_api"
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

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	// Whatever happens next, no client-sent identity header survives.
	h.ident.strip(r.Header)
	reqID := h.ids.get(r.Header.Get(headerRequestID))
	r.Header[headerRequestID] = []string{reqID}
	w.Header()[headerRequestID] = r.Header[headerRequestID]

	out := outcome{route: -1}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.log.Error("panic serving request", zap.String("request_id", reqID), zap.Any("panic", p), zap.Stack("stack"))
			out.status, out.err = http.StatusInternalServerError, errors.New("panic")
			writeError(w, out.status)
		}
		h.finish(r, reqID, start, &out)
	}()

	p := r.URL.Path
	switch {
	case h.faPath != "" && (p == h.faPath || strings.HasPrefix(p, h.faPath+"/")):
		out.mode = modeForwardAuth
		h.serveForwardAuth(w, r, &out)
	case h.apiPath != "" && strings.HasPrefix(p, h.apiPath+"/"):
		out.mode = modeTokenAPI
		h.serveTokenAPI(w, r, &out)
	default:
		out.mode = modeProxy
		h.serveProxy(w, r, &out)
	}
}

// request is the original request as policy sees it.
type request struct {
	host, method, path string
}

// decide runs the shared pipeline: route, token, verification, policy. It
// returns the identity (zero when anonymous) and the status to answer.
func (h *Handler) decide(r *http.Request, req request, out *outcome) (verify.Identity, bool) {
	out.path = req.path
	out.route = h.matchRoute(req)
	if out.route < 0 {
		out.status, out.err = http.StatusForbidden, errNoRoute
		return verify.Identity{}, false
	}
	rt := &h.routes[out.route]
	if rt.access == AccessDeny {
		out.status, out.err = http.StatusForbidden, errDenied
		return verify.Identity{}, false
	}
	tok, err := h.extractToken(r)
	if err != nil {
		out.status, out.err = statusFor(err), err
		return verify.Identity{}, false
	}
	if tok == "" {
		if rt.access == AccessPublic {
			out.status = http.StatusOK
			return verify.Identity{}, false
		}
		out.status, out.err = http.StatusUnauthorized, errNoToken
		return verify.Identity{}, false
	}
	id, err := h.verifier.Verify(r.Context(), tok)
	if err != nil {
		out.status, out.err = statusFor(err), err
		return verify.Identity{}, false
	}
	out.userID = id.Subject
	if !rt.require.allows(&id) {
		out.status, out.err = http.StatusForbidden, errForbidden
		return id, false
	}
	out.status = http.StatusOK
	return id, true
}

func (h *Handler) matchRoute(req request) int {
	for i := range h.routes {
		if h.routes[i].match(req.host, req.method, req.path) {
			return i
		}
	}
	return -1
}

// identityValues maps an identity onto the header slots. An anonymous request
// (zero identity) gets all-empty values.
func identityValues(id *verify.Identity, known bool) [numSlots]string {
	var v [numSlots]string
	if !known {
		return v
	}
	v[slotUserID] = id.Subject
	v[slotFirebaseUID] = id.FirebaseUID
	v[slotEmail] = id.Email
	v[slotEmailVerified] = strconv.FormatBool(id.EmailVerified)
	v[slotName] = id.Name
	v[slotType] = id.Role
	v[slotProvider] = string(id.Provider)
	// Federation is not wired yet: the identity comes from the token alone.
	v[slotFederation] = "disabled"
	return v
}

// peerTrusted reports whether the TCP peer is in TrustedProxies.
func (h *Handler) peerTrusted(r *http.Request) bool {
	if len(h.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (h *Handler) finish(r *http.Request, reqID string, start time.Time, out *outcome) {
	d := h.now().Sub(start)
	route := "none"
	if out.route >= 0 {
		route = h.routes[out.route].name
	}
	h.metrics.observe(out.mode, out.route, out.status, d)
	if !h.access {
		return
	}
	path := out.path
	if path == "" {
		path = r.URL.Path
	}
	fields := []zap.Field{
		zap.String("request_id", reqID),
		zap.String("mode", out.mode),
		zap.String("method", r.Method),
		zap.String("path", path),
		zap.String("route", route),
		zap.Int("status", out.status),
		zap.Duration("duration", d),
		zap.String("user_id", out.userID),
	}
	if out.err != nil {
		fields = append(fields, zap.String("reason", reasonFor(out.err)), zap.Error(out.err))
	}
	h.log.Info("request", fields...)
}

package proxy

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ExtAuthzServer answers Envoy's ext_authz over gRPC
// (envoy.service.auth.v3.Authorization/Check) with the decision that
// forward-auth makes, and serves grpc.health.v1.Health. It is safe for
// concurrent use.
type ExtAuthzServer struct {
	srv    *grpc.Server
	health *health.Server
}

// authzService is the full name of the Authorization service, as health
// checks name it.
const authzService = "envoy.service.auth.v3.Authorization"

// NewExtAuthzServer builds the gRPC server of h's ext_authz_grpc
// configuration. It listens nowhere until Serve.
// Each Check is decided by the handler's configuration of the moment (see
// Handler.Reload); the listener's own settings are those of h's at call.
func NewExtAuthzServer(h *Handler) *ExtAuthzServer {
	c := h.cur.Load().cfg.ExtAuthzGRPC
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(c.MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(uint32(c.MaxConcurrentStreams)),
		// Envoy's HTTP/2 keepalive (connection_keepalive) pings as often
		// as every few seconds; grpc-go's default policy answers pings
		// more frequent than every 5 minutes with GOAWAY, which would
		// churn the connection Envoy sends every Check on.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	authv3.RegisterAuthorizationServer(srv, extAuthz{h: h})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authzService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return &ExtAuthzServer{srv: srv, health: hs}
}

// Serve accepts connections on ln until Shutdown.
func (s *ExtAuthzServer) Serve(ln net.Listener) error {
	return s.srv.Serve(ln)
}

// Drain makes the health service answer NOT_SERVING, so that Envoy's
// health checks take this replica out before it stops; Checks are still
// answered.
func (s *ExtAuthzServer) Drain() { s.health.Shutdown() }

// Shutdown stops accepting connections and waits for the Checks in flight
// until ctx is done, then closes what is left. It returns ctx's error when
// it had to close Checks in flight.
func (s *ExtAuthzServer) Shutdown(ctx context.Context) error {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.srv.Stop()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once, closing every connection.
func (s *ExtAuthzServer) Close() { s.srv.Stop() }

// extAuthz is the Authorization service.
type extAuthz struct {
	authv3.UnimplementedAuthorizationServer
	h *Handler
}

// Check implements the Authorization service. Every decision, authgate's
// own failures included, is a CheckResponse; only a Check whose caller has
// gone away gets a gRPC error.
func (s extAuthz) Check(ctx context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	resp := s.h.cur.Load().check(ctx, cr)
	if resp == nil {
		return nil, status.Error(codes.Canceled, "canceled")
	}
	return resp, nil
}

// check answers one CheckRequest through the pipeline forward-auth uses:
// the peer must be a trusted proxy, the original method, host and path
// come from the request's attributes, the token from its headers. It
// returns nil when the caller went away.
func (h *handler) check(ctx context.Context, cr *authv3.CheckRequest) (resp *authv3.CheckResponse) {
	start := h.now()
	hr := cr.GetAttributes().GetRequest().GetHttp()
	hdr, names := checkHeaders(hr)
	// Whatever happens next, nothing reads a client's identity header.
	h.ident.strip(hdr)
	reqID := h.ids.get(firstNonEmpty(hr.GetId(), hdr.Get(headerRequestID)))
	method := hr.GetMethod()
	if !methodOK(method) {
		method = "_OTHER" // a label, never the client's bytes
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ExtAuthzGRPC.Timeout)
	defer cancel()

	out := outcome{route: -1, mode: modeExtAuthzGRPC}
	var span trace.Span // nil when tracing is off
	if h.tracer != nil {
		ctx, span = h.startCheckSpan(ctx, hdr, method)
	}
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("panic serving check", zap.String("request_id", reqID), zap.Any("panic", p), zap.Stack("stack"))
			out.status, out.err = http.StatusInternalServerError, errors.New("panic")
			resp = deniedResponse(out.status, out.err)
		}
		if span != nil {
			h.endRequest(span, &out)
		}
		h.finish(method, "", reqID, start, &out)
	}()

	p, ok := h.decideCheck(ctx, hr, hdr, &out)
	if out.status == http.StatusBadRequest {
		out.status = http.StatusForbidden // as forward-auth: gateways take 2xx, 401, 403
	}
	switch out.status {
	case http.StatusOK:
	case statusClientClosed:
		return nil
	default:
		return deniedResponse(out.status, out.err)
	}
	vals := identityValues(&p, ok)
	// The signed assertion goes upstream with the identity headers; a warn
	// route's deprecation headers go to the client, as in proxy mode.
	upstream := http.Header{}
	if err := h.setAssertion(upstream, &p, ok, &vals, out.route, true); err != nil {
		out.status, out.err = http.StatusInternalServerError, err
		return deniedResponse(out.status, out.err)
	}
	var client http.Header
	if p.legacyWarn {
		client = http.Header{}
		h.routes[out.route].legacy.setWarning(client)
	}
	return h.okResponse(&vals, names, upstream, client)
}

// decideCheck reads the original request from hr and decides it.
func (h *handler) decideCheck(ctx context.Context, hr *authv3.AttributeContext_HttpRequest, hdr http.Header, out *outcome) (principal, bool) {
	req, err := h.checkRequest(ctx, hr)
	if err != nil {
		out.status, out.err = statusFor(err), err
		return principal{}, false
	}
	return h.decide(ctx, hdr, req, out)
}

// checkRequest reads the method, host and canonical path of the request
// Envoy asks about. They are believed only from a peer in trusted_proxies,
// as forward-auth's gateway headers are.
func (h *handler) checkRequest(ctx context.Context, hr *authv3.AttributeContext_HttpRequest) (request, error) {
	if !h.grpcPeerTrusted(ctx) {
		return request{}, errUntrustedPeer
	}
	if hr == nil || hr.GetPath() == "" {
		return request{}, errNoOriginalURI
	}
	// Envoy's path is the request target, query included.
	rawPath := uriPath(hr.GetPath())
	if rawPath == "" {
		return request{}, errAmbiguousPath
	}
	return gatewayRequest(hr.GetHost(), hr.GetMethod(), rawPath)
}

// grpcPeerTrusted reports whether the gRPC peer is in TrustedProxies.
func (h *handler) grpcPeerTrusted(ctx context.Context) bool {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil || len(h.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(pr.Addr.String())
	if err != nil {
		return false
	}
	return h.trustedAddr(ap.Addr().Unmap())
}

// checkHeaders returns the original request's headers, without pseudo
// headers, and the names it sent them under. Envoy sends them in
// header_map when encode_raw_headers is set (repeats as repeats), else in
// headers (names lower case, repeats joined with ",").
func checkHeaders(hr *authv3.AttributeContext_HttpRequest) (http.Header, []string) {
	hdr := http.Header{}
	var names []string
	add := func(k, v string) {
		if k == "" || k[0] == ':' {
			return
		}
		ck := http.CanonicalHeaderKey(k)
		if _, seen := hdr[ck]; !seen {
			names = append(names, k)
		}
		hdr[ck] = append(hdr[ck], v)
	}
	if raw := hr.GetHeaderMap().GetHeaders(); len(raw) > 0 {
		for _, hv := range raw {
			v := hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			add(hv.GetKey(), v)
		}
		return hdr, names
	}
	for k, v := range hr.GetHeaders() {
		add(k, v)
	}
	return hdr, names
}

// startCheckSpan starts the server span of a Check. Its parent is the
// trace context in the original request's headers or, when there is none,
// the one in the gRPC metadata (Envoy's span around the Check). Only called
// with tracing on.
func (h *handler) startCheckSpan(ctx context.Context, hdr http.Header, method string) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(h.prop.Extract(context.Background(), propagation.HeaderCarrier(hdr))).IsValid() {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			mdHdr := http.Header{}
			for k, vs := range md {
				mdHdr[http.CanonicalHeaderKey(k)] = vs
			}
			hdr = mdHdr
		}
	}
	return h.startSpan(ctx, hdr, modeExtAuthzGRPC, method)
}

// okResponse allows the request: Envoy sets every identity header (the
// full set, empty where unknown, as forward-auth answers) and then removes
// the headers in headers_to_remove: every spelling of an identity header
// the client sent, save those set to a value just now, and the
// strip_headers names.
//
// upstream are further headers for the upstream request (the signed
// assertion), client headers for the client's response (a warn route's
// Deprecation, Sunset and Link); both may be nil.
func (h *handler) okResponse(vals *[numSlots]string, names []string, upstream, client http.Header) *authv3.CheckResponse {
	set := make([]*corev3.HeaderValueOption, 0, numSlots+len(upstream))
	keep := make([]string, 0, numSlots+len(upstream))
	for i, v := range vals {
		name := strings.ToLower(h.ident.names[i])
		set = append(set, overwrite(name, v))
		if v != "" {
			keep = append(keep, name)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(upstream)) {
		vs := upstream[k]
		name := strings.ToLower(k)
		set = append(set, overwrite(name, vs[0]))
		if vs[0] != "" {
			keep = append(keep, name)
		}
	}
	var toClient []*corev3.HeaderValueOption
	for _, k := range slices.Sorted(maps.Keys(client)) {
		toClient = append(toClient, overwrite(strings.ToLower(k), client[k][0]))
	}
	var remove []string
	for _, n := range names {
		if !h.ident.hasFoldedPrefix(n) && !h.ident.isForeign(n) {
			continue
		}
		if l := strings.ToLower(n); !slices.Contains(keep, l) {
			remove = append(remove, l)
		}
	}
	for _, s := range h.cfg.StripHeaders {
		if !strings.HasSuffix(s, "*") {
			remove = append(remove, strings.ToLower(s))
		}
	}
	slices.Sort(remove)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              set,
			HeadersToRemove:      slices.Compact(remove),
			ResponseHeadersToAdd: toClient,
		}},
	}
}

// deniedResponse refuses the request with status and its fixed body, the
// headers forward-auth's refusal carries and WWW-Authenticate on 401;
// never an identity, never a cause.
func deniedResponse(code int, err error) *authv3.CheckResponse {
	hdrs := []*corev3.HeaderValueOption{
		overwrite("content-type", textPlain[0]),
		overwrite("cache-control", noStore[0]),
		overwrite("x-content-type-options", nosniff[0]),
	}
	if code == http.StatusUnauthorized {
		www := wwwAuthInvalid[0]
		if errors.Is(err, errNoToken) {
			www = wwwAuthMissing[0]
		}
		hdrs = append(hdrs, overwrite("www-authenticate", www))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode(code))},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: hdrs,
			Body:    statusBody[code],
		}},
	}
}

func overwrite(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// grpcCode is the CheckResponse status of a refusal with HTTP status code.
func grpcCode(code int) codes.Code {
	switch {
	case code == http.StatusUnauthorized:
		return codes.Unauthenticated
	case code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		return codes.Unavailable
	case code >= 500:
		return codes.Internal
	default:
		return codes.PermissionDenied
	}
}

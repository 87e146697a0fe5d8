package proxy

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/verify"
)

// startExtAuthz serves h's ext_authz gRPC API on 127.0.0.1:0 and returns a
// client connection to it, built from the same generated types Envoy's
// API is.
func startExtAuthz(t *testing.T, h *Handler) (*ExtAuthzServer, *grpc.ClientConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewExtAuthzServer(h)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, conn
}

// checkRequest is what Envoy sends for method, host and path (the request
// target, query included) with headers (lower-case names).
func checkRequest(method, host, path string, headers map[string]string) *authv3.CheckRequest {
	hdr := map[string]string{":method": method, ":authority": host, ":path": path}
	for k, v := range headers {
		hdr[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-1", Method: method, Host: host, Path: path, Scheme: "https", Headers: hdr, Protocol: "HTTP/1.1",
		}},
	}}
}

// okHeaders returns the headers an OK response sets, by name.
func okHeaders(t *testing.T, resp *authv3.CheckResponse) map[string]string {
	t.Helper()
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("response is not OK: %v", resp)
	}
	got := map[string]string{}
	for _, o := range ok.GetHeaders() {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || o.GetAppend() != nil {
			t.Errorf("header %s: append_action %v, append %v; want OVERWRITE_IF_EXISTS_OR_ADD only", o.GetHeader().GetKey(), o.GetAppendAction(), o.GetAppend())
		}
		if _, dup := got[o.GetHeader().GetKey()]; dup {
			t.Errorf("header %s set twice", o.GetHeader().GetKey())
		}
		got[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return got
}

func TestExtAuthzCheck(t *testing.T) {
	h := newHandler(t, testConfig(""))
	_, conn := startExtAuthz(t, h)
	client := authv3.NewAuthorizationClient(conn)
	user := token(t, "u-1", nil)
	admin := token(t, "a-1", func(c map[string]any) { c["user_type"] = "admin" })
	bearer := func(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

	tests := []struct {
		name       string
		give       *authv3.CheckRequest
		wantStatus int // HTTP status; 200 = OK response
		wantCode   codes.Code
		wantWWW    string
		wantUser   string
	}{
		{name: "valid token", give: checkRequest("GET", "svc", "/x?a=1", bearer(user)), wantStatus: 200, wantUser: "u-1"},
		{name: "token in the cookie", give: checkRequest("GET", "svc", "/x", map[string]string{"cookie": "a=b; __session=" + user}), wantStatus: 200, wantUser: "u-1"},
		{name: "no token", give: checkRequest("GET", "svc", "/x", nil), wantStatus: 401, wantCode: codes.Unauthenticated, wantWWW: "Bearer"},
		{name: "forged token", give: checkRequest("GET", "svc", "/x", bearer(forgedToken(t, "u-1"))), wantStatus: 401, wantCode: codes.Unauthenticated, wantWWW: `Bearer error="invalid_token"`},
		{name: "public without token", give: checkRequest("GET", "svc", "/public/a", nil), wantStatus: 200},
		{name: "public with bad token", give: checkRequest("GET", "svc", "/public/a", bearer("x.y.z")), wantStatus: 401, wantCode: codes.Unauthenticated, wantWWW: `Bearer error="invalid_token"`},
		{name: "role missing", give: checkRequest("GET", "svc", "/admin", bearer(user)), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "role present", give: checkRequest("GET", "svc", "/admin", bearer(admin)), wantStatus: 200, wantUser: "a-1"},
		{name: "method rule", give: checkRequest("POST", "api.example.test", "/api/x", bearer(user)), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "host with port", give: checkRequest("GET", "api.example.test:8443", "/api/x", bearer(user)), wantStatus: 200, wantUser: "u-1"},
		{name: "denied route", give: checkRequest("GET", "svc", "/blocked", bearer(admin)), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "no route", give: checkRequest("GET", "other.example.org", "/x", bearer(user)), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "query cannot carry a public path", give: checkRequest("GET", "svc", "/admin?/public/x", nil), wantStatus: 401, wantCode: codes.Unauthenticated, wantWWW: "Bearer"},
		{name: "upper case that changes the route", give: checkRequest("GET", "svc", "/Admin", bearer(user)), wantStatus: 403, wantCode: codes.PermissionDenied},
		// Malformed requests: refused, and 400s become 403 as forward-auth's do.
		{name: "no attributes", give: &authv3.CheckRequest{}, wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "no http request", give: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "no path", give: checkRequest("GET", "svc", "", bearer(user)), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "no method", give: checkRequest("", "svc", "/x", bearer(user)), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "bad method", give: checkRequest("GET /admin", "svc", "/x", bearer(user)), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "relative path", give: checkRequest("GET", "svc", "public/x", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "dot-dot", give: checkRequest("GET", "svc", "/public/../admin", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "encoded dot-dot", give: checkRequest("GET", "svc", "/public/%2E%2E/admin", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "encoded slash", give: checkRequest("GET", "svc", "/public/..%2fadmin", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "empty segment", give: checkRequest("GET", "svc", "/public//x", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "fragment", give: checkRequest("GET", "svc", "/public/x#/../../admin", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "overlong utf-8 dot", give: checkRequest("GET", "svc", "/public/%c0%ae%c0%ae/admin", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "bad percent encoding", give: checkRequest("GET", "svc", "/public/%zz", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "NUL byte", give: checkRequest("GET", "svc", "/public/a%00b", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
		{name: "double encoding", give: checkRequest("GET", "svc", "/public/%252e%252e/admin", nil), wantStatus: 403, wantCode: codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Check(t.Context(), tt.give)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if tt.wantStatus == 200 {
				if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK {
					t.Fatalf("status = %v (%v), want OK", c, resp.GetDeniedResponse().GetStatus().GetCode())
				}
				got := okHeaders(t, resp)
				// The full set, empty where unknown, as forward-auth answers.
				for _, name := range h.cur.Load().ident.names {
					if _, ok := got[strings.ToLower(name)]; !ok {
						t.Errorf("OK response does not set %s", name)
					}
				}
				if len(got) != numSlots {
					t.Errorf("OK response sets %d headers, want the %d identity headers: %v", len(got), numSlots, got)
				}
				if got["x-user-id"] != tt.wantUser {
					t.Errorf("x-user-id = %q, want %q", got["x-user-id"], tt.wantUser)
				}
				return
			}
			if resp.GetOkResponse() != nil {
				t.Fatalf("refusal carries an OK response: %v", resp)
			}
			if c := codes.Code(resp.GetStatus().GetCode()); c != tt.wantCode {
				t.Errorf("gRPC status = %v, want %v", c, tt.wantCode)
			}
			if msg := resp.GetStatus().GetMessage(); msg != "" {
				t.Errorf("status message = %q, want none", msg)
			}
			d := resp.GetDeniedResponse()
			if got := int(d.GetStatus().GetCode()); got != tt.wantStatus {
				t.Errorf("HTTP status = %d, want %d", got, tt.wantStatus)
			}
			if d.GetBody() != statusBody[tt.wantStatus] {
				t.Errorf("body = %q, want %q", d.GetBody(), statusBody[tt.wantStatus])
			}
			hdr := map[string]string{}
			for _, o := range d.GetHeaders() {
				hdr[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
				if strings.HasPrefix(o.GetHeader().GetKey(), "x-user") {
					t.Errorf("refusal carries identity header %s", o.GetHeader().GetKey())
				}
			}
			if hdr["www-authenticate"] != tt.wantWWW {
				t.Errorf("www-authenticate = %q, want %q", hdr["www-authenticate"], tt.wantWWW)
			}
			if hdr["cache-control"] != "no-store" {
				t.Errorf("cache-control = %q, want no-store", hdr["cache-control"])
			}
		})
	}
}

// A client's identity headers, in any spelling, never reach the upstream:
// Envoy sets authgate's values, then removes headers_to_remove.
func TestExtAuthzSpoofedHeadersRemoved(t *testing.T) {
	h := newHandler(t, testConfig(""))
	_, conn := startExtAuthz(t, h)
	client := authv3.NewAuthorizationClient(conn)
	give := checkRequest("GET", "svc", "/x", map[string]string{
		"authorization":         "Bearer " + token(t, "u-1", nil),
		"x-user-id":             "admin",      // overwritten with u-1
		"x_user_type":           "admin",      // another spelling
		"x-user-token-balance":  "1000000",    // authgate has none to set
		"x-user-extra":          "anything",   // under the prefix
		"x-auth-request-groups": "admins",     // strip_headers pattern
		"remote-user":           "root",       // strip_headers name
		"x-forwarded-for":       "192.0.2.10", // not an identity header
	})
	resp, err := client.Check(t.Context(), give)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	set := okHeaders(t, resp)
	if set["x-user-id"] != "u-1" || set["x-user-type"] != "user" {
		t.Errorf("set x-user-id, x-user-type = %q, %q; want u-1, user", set["x-user-id"], set["x-user-type"])
	}
	remove := resp.GetOkResponse().GetHeadersToRemove()
	for _, want := range []string{"x_user_type", "x-user-token-balance", "x-user-extra", "x-auth-request-groups", "remote-user", "x-forwarded-user", "x-remote-user"} {
		if !slices.Contains(remove, want) {
			t.Errorf("headers_to_remove lacks %s: %q", want, remove)
		}
	}
	// Envoy removes after setting: a name set to a value must not be
	// removed, nor a header the request needs.
	for _, keep := range []string{"x-user-id", "x-user-type", "x-user-email", "x-forwarded-for", "authorization"} {
		if slices.Contains(remove, keep) {
			t.Errorf("headers_to_remove removes %s: %q", keep, remove)
		}
	}
	if !slices.IsSorted(remove) || len(slices.Compact(slices.Clone(remove))) != len(remove) {
		t.Errorf("headers_to_remove is not sorted and unique: %q", remove)
	}
}

// With encode_raw_headers, Envoy sends header_map: values in raw_value and
// repeats as repeats, which the pipeline reads as it reads an HTTP
// request's.
func TestExtAuthzRawHeaderMap(t *testing.T) {
	h := newHandler(t, testConfig(""))
	_, conn := startExtAuthz(t, h)
	client := authv3.NewAuthorizationClient(conn)
	user := token(t, "u-1", nil)
	raw := func(kv ...string) *authv3.CheckRequest {
		cr := checkRequest("GET", "svc", "/x", nil)
		hr := cr.Attributes.Request.Http
		hr.Headers = nil
		hr.HeaderMap = &corev3.HeaderMap{}
		for i := 0; i < len(kv); i += 2 {
			hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
		}
		return cr
	}
	tests := []struct {
		name       string
		give       *authv3.CheckRequest
		wantStatus int
	}{
		{name: "token in raw_value", give: raw(":path", "/x", "authorization", "Bearer "+user, "x_user_id", "admin"), wantStatus: 200},
		{name: "two authorization headers", give: raw("authorization", "Bearer "+user, "authorization", "Bearer "+token(t, "u-2", nil)), wantStatus: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Check(t.Context(), tt.give)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if tt.wantStatus == 200 {
				if got := okHeaders(t, resp)["x-user-id"]; got != "u-1" {
					t.Errorf("x-user-id = %q, want u-1", got)
				}
				if rm := resp.GetOkResponse().GetHeadersToRemove(); !slices.Contains(rm, "x_user_id") {
					t.Errorf("headers_to_remove = %q, want x_user_id in it", rm)
				}
				return
			}
			if got := int(resp.GetDeniedResponse().GetStatus().GetCode()); got != tt.wantStatus {
				t.Errorf("HTTP status = %d, want %d", got, tt.wantStatus)
			}
		})
	}
}

// Only a trusted proxy's Checks are believed, as forward-auth's.
func TestExtAuthzUntrustedPeer(t *testing.T) {
	cfg := testConfig("")
	cfg.TrustedProxies = []string{"192.0.2.1/32"}
	_, conn := startExtAuthz(t, newHandler(t, cfg))
	resp, err := authv3.NewAuthorizationClient(conn).Check(t.Context(),
		checkRequest("GET", "svc", "/public/a", map[string]string{"authorization": "Bearer " + token(t, "u-1", nil)}))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 403 {
		t.Fatalf("untrusted peer: status %d, want 403 (%v)", got, resp)
	}
}

// authgate's own failures are 5xx, as forward-auth's are, without a cause.
func TestExtAuthzStoreDown(t *testing.T) {
	down := fakeUsers(func(verify.Identity) (federation.User, error) {
		return federation.User{}, federation.ErrUnavailable
	})
	_, conn := startExtAuthz(t, newHandler(t, testConfig(""), WithUsers(down)))
	resp, err := authv3.NewAuthorizationClient(conn).Check(t.Context(),
		checkRequest("GET", "svc", "/x", map[string]string{"authorization": "Bearer " + token(t, "u-1", nil)}))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	d := resp.GetDeniedResponse()
	if d.GetStatus().GetCode() != 503 || codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable {
		t.Fatalf("store down: %d/%v, want 503/Unavailable", d.GetStatus().GetCode(), codes.Code(resp.GetStatus().GetCode()))
	}
	if d.GetBody() != statusBody[503] || resp.GetStatus().GetMessage() != "" {
		t.Errorf("store down: body %q, message %q; want the fixed body and no message", d.GetBody(), resp.GetStatus().GetMessage())
	}
}

func TestExtAuthzMessageTooLarge(t *testing.T) {
	cfg := testConfig("")
	cfg.ExtAuthzGRPC.MaxRecvMsgSize = 4 << 10
	_, conn := startExtAuthz(t, newHandler(t, cfg))
	_, err := authv3.NewAuthorizationClient(conn).Check(t.Context(),
		checkRequest("GET", "svc", "/x", map[string]string{"x-big": strings.Repeat("a", 8<<10)}))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Check of 8 KiB with a 4 KiB limit: %v, want ResourceExhausted", err)
	}
}

func TestExtAuthzHealth(t *testing.T) {
	s, conn := startExtAuthz(t, newHandler(t, testConfig("")))
	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", authzService} {
		resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v, %v; want SERVING", svc, resp.GetStatus(), err)
		}
	}
	s.Drain()
	resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: authzService})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after Drain: %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
}

func TestExtAuthzMetricsAndLog(t *testing.T) {
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zapcore.InfoLevel)
	h, err := New(testConfig(""), newVerifier(t), zap.New(core), reg)
	if err != nil {
		t.Fatal(err)
	}
	_, conn := startExtAuthz(t, h)
	client := authv3.NewAuthorizationClient(conn)
	tok := token(t, "u-1", nil)
	for _, cr := range []*authv3.CheckRequest{
		checkRequest("GET", "svc", "/x", map[string]string{"authorization": "Bearer " + tok}),
		checkRequest("GET", "svc", "/admin", map[string]string{"authorization": "Bearer " + tok}),
		checkRequest("GET", "svc", "/x", nil),
	} {
		if _, err := client.Check(t.Context(), cr); err != nil {
			t.Fatal(err)
		}
	}
	got := nonZero(t, reg, "requests_total")
	for _, want := range []string{
		`requests_total{code="2xx",mode="ext_authz_grpc",route="default"} 1`,
		`requests_total{code="4xx",mode="ext_authz_grpc",route="admin"} 1`,
		`requests_total{code="4xx",mode="ext_authz_grpc",route="default"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics missing %q; got:\n%s", want, got)
		}
	}
	if c := histogramCount(t, reg, "request_duration_seconds", map[string]string{"mode": "ext_authz_grpc"}); c != 3 {
		t.Errorf("request_duration_seconds{mode=ext_authz_grpc} count = %d, want 3", c)
	}
	entries := logs.FilterMessage("request").All()
	if len(entries) != 3 {
		t.Fatalf("got %d access log lines, want 3", len(entries))
	}
	first := entries[0].ContextMap()
	for k, want := range map[string]any{"request_id": "req-1", "mode": "ext_authz_grpc", "method": "GET", "path": "/x", "route": "default", "status": int64(200), "user_id": "u-1"} {
		if first[k] != want {
			t.Errorf("log field %s = %v, want %v", k, first[k], want)
		}
	}
	for _, e := range entries {
		b, _ := json.Marshal(e.ContextMap())
		if line := string(b); strings.Contains(line, tok) || strings.Contains(line, "u-1@example.test") {
			t.Errorf("log line carries the token or email: %s", line)
		}
	}
}

func TestExtAuthzTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	v := newVerifierOpts(t, nil, []verify.Option{verify.WithTracerProvider(tp)})
	h, err := New(testConfig(""), v, zaptest.NewLogger(t), prometheus.NewRegistry(), WithTracerProvider(tp, propagation.TraceContext{}))
	if err != nil {
		t.Fatal(err)
	}
	_, conn := startExtAuthz(t, h)
	client := authv3.NewAuthorizationClient(conn)
	tok := token(t, "u-1", nil)

	const envoyTraceID = "0af7651916cd43dd8448eb211c80319c"
	tests := []struct {
		name        string
		giveHeaders map[string]string
		giveMD      string // traceparent in the gRPC metadata
		wantTraceID string
		wantParent  string
	}{
		{name: "from the request's headers", giveHeaders: map[string]string{"traceparent": clientTraceparent}, giveMD: "00-" + envoyTraceID + "-b7ad6b7169203331-01", wantTraceID: clientTraceID, wantParent: clientSpanID},
		{name: "from the gRPC metadata", giveMD: "00-" + envoyTraceID + "-b7ad6b7169203331-01", wantTraceID: envoyTraceID, wantParent: "b7ad6b7169203331"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp.Reset()
			hdr := map[string]string{"authorization": "Bearer " + tok}
			for k, v := range tt.giveHeaders {
				hdr[k] = v
			}
			ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", tt.giveMD)
			if _, err := client.Check(ctx, checkRequest("GET", "svc", "/x", hdr)); err != nil {
				t.Fatal(err)
			}
			spans := exp.GetSpans()
			srv := spanByName(t, spans, "authgate.ext_authz_grpc")
			if got := srv.SpanContext.TraceID().String(); got != tt.wantTraceID {
				t.Errorf("trace id = %s, want %s", got, tt.wantTraceID)
			}
			if got := srv.Parent.SpanID().String(); got != tt.wantParent {
				t.Errorf("parent span = %s, want %s", got, tt.wantParent)
			}
			// Verification is a child of the Check's span.
			for _, s := range spans {
				if s.Name != srv.Name && s.SpanContext.TraceID() != srv.SpanContext.TraceID() {
					t.Errorf("span %s is in another trace", s.Name)
				}
			}
		})
	}
}

// Shutdown waits for Checks in flight, then stops the listener.
func TestExtAuthzShutdown(t *testing.T) {
	h := newHandler(t, testConfig(""))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewExtAuthzServer(h)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	if _, err := client.Check(t.Context(), checkRequest("GET", "svc", "/x", nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
}

// An ext_authz allow carries what forward-auth answers carry: the signed
// assertion for the upstream, and a warn route's deprecation headers for
// the client's response.
func TestExtAuthzAssertionAndLegacyWarning(t *testing.T) {
	cfg, keys := assertionConfig(t, "", AlgES256, newP256(t))
	h := newHandler(t, cfg, WithAssertionKeys(keys))
	_, conn := startExtAuthz(t, h)
	client := authv3.NewAuthorizationClient(conn)
	req := checkRequest("GET", "svc", "/api/x", map[string]string{
		"authorization": "Bearer " + token(t, "u-1", nil), "x-user-assertion": "forged",
	})
	resp, err := client.Check(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	got := okHeaders(t, resp)
	claims := verifyAssertion(t, h, got["x-user-assertion"], jose.ES256)
	if claims["sub"] != "u-1" {
		t.Errorf("assertion sub = %v, want u-1", claims["sub"])
	}
	if slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "x-user-assertion") {
		t.Error("headers_to_remove lists x-user-assertion: Envoy would remove authgate's own assertion")
	}

	lh := newLegacyHandler(t, legacyConfig(""), nil)
	_, lconn := startExtAuthz(t, lh)
	for _, tt := range []struct {
		giveToken string
		wantDep   bool
	}{{"legacy", true}, {"firebase", false}} {
		resp, err := authv3.NewAuthorizationClient(lconn).Check(t.Context(),
			checkRequest("GET", "svc", "/warn", map[string]string{"authorization": "Bearer " + tt.giveToken}))
		if err != nil {
			t.Fatal(err)
		}
		toClient := map[string]string{}
		for _, o := range resp.GetOkResponse().GetResponseHeadersToAdd() {
			toClient[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		if gotDep := toClient["deprecation"] == "@1767225600"; gotDep != tt.wantDep {
			t.Errorf("%s token on a warn route: response_headers_to_add = %v, want Deprecation %t", tt.giveToken, toClient, tt.wantDep)
		}
		if tt.wantDep && toClient["link"] != `<https://example.test/move>; rel="deprecation"` {
			t.Errorf("Link = %q", toClient["link"])
		}
	}
}

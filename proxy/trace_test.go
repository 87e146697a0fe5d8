package proxy

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify"
)

// Client trace: trace id 4bf9..., parent span 00f0..., sampled.
const (
	clientTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID      = "00f067aa0ba902b7"
	clientTraceparent = "00-" + clientTraceID + "-" + clientSpanID + "-01"
)

func newTracedHandler(t *testing.T, upstream string) (*Handler, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	v := newVerifierOpts(t, nil, []verify.Option{verify.WithTracerProvider(tp)})
	h, err := New(testConfig(upstream), v, zaptest.NewLogger(t), prometheus.NewRegistry(), WithTracerProvider(tp, propagation.TraceContext{}))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h, exp
}

// spanByName returns the one ended span called name.
func spanByName(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("spans named %q = %d, want 1 (all: %v)", name, len(found), stubNames(spans))
	}
	return found[0]
}

func stubNames(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func TestTracingProxyContinuesClientTrace(t *testing.T) {
	up := newUpstream(t, nil)
	h, exp := newTracedHandler(t, up.URL)
	tok := token(t, "u-1", nil)
	r := httptest.NewRequest("GET", "http://svc/x?secret=q", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Traceparent", clientTraceparent)
	if w := serve(h, r, "203.0.113.9:4000"); w.Code != 200 {
		t.Fatalf("status = %d, want 200", w.Code)
	}

	spans := exp.GetSpans()
	server := spanByName(t, spans, "authgate.proxy")
	if got := server.SpanContext.TraceID().String(); got != clientTraceID {
		t.Errorf("server span trace id = %s, want %s", got, clientTraceID)
	}
	if got := server.Parent.SpanID().String(); got != clientSpanID {
		t.Errorf("server span parent = %s, want %s", got, clientSpanID)
	}
	if server.SpanKind != trace.SpanKindServer {
		t.Errorf("server span kind = %v, want server", server.SpanKind)
	}
	if v := spanByName(t, spans, "verify.Verify"); v.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("verify span parent = %s, want the server span", v.Parent.SpanID())
	}
	upSpan := spanByName(t, spans, "authgate.upstream")
	if upSpan.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("upstream span parent = %s, want the server span %s", upSpan.Parent.SpanID(), server.SpanContext.SpanID())
	}

	got := up.last(t).Header.Values("Traceparent")
	want := "00-" + clientTraceID + "-" + upSpan.SpanContext.SpanID().String() + "-01"
	if len(got) != 1 || got[0] != want {
		t.Errorf("upstream traceparent = %q, want [%q]", got, want)
	}

	for _, s := range spans {
		for _, a := range s.Attributes {
			v := a.Value.Emit()
			for _, secret := range []string{tok, "u-1", "example", "secret=q"} {
				if strings.Contains(v, secret) {
					t.Errorf("span %s attribute %s = %q carries %q", s.Name, a.Key, v, secret)
				}
			}
		}
	}
	attrs := map[string]string{}
	for _, a := range server.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	for k, v := range map[string]string{"authgate.route": "default", "authgate.mode": "proxy", "http.response.status_code": "200"} {
		if attrs[k] != v {
			t.Errorf("server span %s = %q, want %q", k, attrs[k], v)
		}
	}
}

func TestTracingForwardAuthSpanName(t *testing.T) {
	h, exp := newTracedHandler(t, "")
	r := httptest.NewRequest("GET", "http://svc/auth", nil)
	r.Header.Set("Authorization", "Bearer "+token(t, "u-1", nil))
	r.Header.Set("X-Forwarded-Uri", "/x")
	w := serve(h, r, "127.0.0.1:4000")
	if w.Code != 200 {
		t.Fatalf("status = %d, want 200", w.Code)
	}
	if got := w.Header().Get("Traceparent"); got != "" {
		t.Errorf("forward-auth answer traceparent = %q, want none", got)
	}
	s := spanByName(t, exp.GetSpans(), "authgate.forward_auth")
	if !s.SpanContext.IsValid() || s.Parent.IsValid() {
		t.Errorf("forward-auth span = %v with parent %v, want a root span", s.SpanContext, s.Parent)
	}
}

func TestTracingOffLeavesClientTraceparent(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHandler(t, testConfig(up.URL))
	r := httptest.NewRequest("GET", "http://svc/x", nil)
	r.Header.Set("Authorization", "Bearer "+token(t, "u-1", nil))
	r.Header.Set("Traceparent", clientTraceparent)
	if w := serve(h, r, "203.0.113.9:4000"); w.Code != 200 {
		t.Fatalf("status = %d, want 200", w.Code)
	}
	if got := up.last(t).Header.Values("Traceparent"); len(got) != 1 || got[0] != clientTraceparent {
		t.Errorf("upstream traceparent = %q, want the client's [%q]", got, clientTraceparent)
	}
}

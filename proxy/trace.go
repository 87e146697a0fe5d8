package proxy

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of authgate's proxy spans.
const tracerName = "github.com/authgate/authgate/proxy"

// WithTracerProvider turns tracing on: every request gets a server span
// whose parent is the trace the client sent (read with prop), verification
// and the user row add child spans through the request context, and a
// proxied request gets an upstream span whose context is sent on in the
// outbound headers. A nil prop means W3C Trace Context. Without this
// option (or with a nil tp) tracing is off, costs nothing, and a client's
// trace headers reach the upstream untouched.
func WithTracerProvider(tp trace.TracerProvider, prop propagation.TextMapPropagator) Option {
	return func(h *handler) {
		if tp == nil {
			h.tracer, h.prop = nil, nil
			return
		}
		if prop == nil {
			prop = propagation.TraceContext{}
		}
		h.tracer, h.prop = tp.Tracer(tracerName), prop
	}
}

// spanNames are the server span names by mode.
var spanNames = map[string]string{
	modeProxy:        "authgate.proxy",
	modeForwardAuth:  "authgate.forward_auth",
	modeTokenAPI:     "authgate.token_api",
	modeAuthAPI:      "authgate.auth_api",
	modeExtAuthzGRPC: "authgate.ext_authz_grpc",
}

// startRequest starts the request's server span, the client's trace (if
// any) as its parent, and returns r carrying it. Only called with tracing
// on.
func (h *handler) startRequest(r *http.Request, mode string) (*http.Request, trace.Span) {
	ctx, span := h.startSpan(r.Context(), r.Header, mode, r.Method)
	return r.WithContext(ctx), span
}

// startSpan starts the server span of a request with headers hdr, whose
// trace (if any) is its parent. Only called with tracing on.
func (h *handler) startSpan(ctx context.Context, hdr http.Header, mode, method string) (context.Context, trace.Span) {
	ctx = h.prop.Extract(ctx, propagation.HeaderCarrier(hdr))
	return h.tracer.Start(ctx, spanNames[mode],
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("authgate.mode", mode),
			attribute.String("http.request.method", method),
		))
}

// endRequest records the outcome on the server span and ends it. Only
// what is in closed sets goes on a span: never a token, an email, a user
// id or the query.
func (h *handler) endRequest(span trace.Span, out *outcome) {
	route := "none"
	if out.route >= 0 {
		route = h.routes[out.route].name
	}
	span.SetAttributes(
		attribute.String("authgate.route", route),
		attribute.Int("http.response.status_code", out.status),
	)
	if out.err != nil {
		span.SetAttributes(attribute.String("authgate.reason", reasonFor(out.err)))
	}
	if out.status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(out.status))
	}
	span.End()
}

// startUpstream starts the client span around the call to the upstream.
// Only called with tracing on.
func (h *handler) startUpstream(r *http.Request, route int) (*http.Request, trace.Span) {
	name := "none"
	if route >= 0 {
		name = h.routes[route].name
	}
	ctx, span := h.tracer.Start(r.Context(), "authgate.upstream",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("authgate.route", name)))
	return r.WithContext(ctx), span
}

func endUpstream(span trace.Span, status int) {
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// injectTrace writes the current span's context into the outbound headers,
// replacing whatever the client sent: the upstream's parent is authgate's
// upstream span, in the client's trace.
func (h *handler) injectTrace(ctx context.Context, hdr http.Header) {
	for _, f := range h.prop.Fields() {
		delete(hdr, http.CanonicalHeaderKey(f))
	}
	h.prop.Inject(ctx, propagation.HeaderCarrier(hdr))
}

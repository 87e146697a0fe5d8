package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Headers that describe the client's connection. A client outside
// trusted_proxies cannot set them; authgate writes its own.
var forwardingHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Method", "X-Forwarded-Uri",
	"X-Forwarded-Server", "X-Real-Ip", "X-Original-Uri", "X-Original-Method",
	"X-Original-Url", "X-Original-Host", "X-Original-Forwarded-For",
}

// newReverseProxy makes the reverse proxy to the upstream, over transport,
// or a new transport of h's configuration when it is nil.
func (h *handler) newReverseProxy(transport *http.Transport) (*httputil.ReverseProxy, error) {
	target, err := url.Parse(h.cfg.Upstream)
	if err != nil {
		return nil, err
	}
	if transport == nil {
		transport = newTransport(h.cfg.Transport)
	}
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { h.rewrite(pr, target) },
		Transport: transport,
		// No periodic flush: ReverseProxy flushes event streams and
		// responses without a length after every write by itself, and a
		// periodic flush would cost a timer on every other response.
		FlushInterval: 0,
		ErrorHandler:  h.upstreamError,
		ErrorLog:      zap.NewStdLog(h.log.Named("upstream")),
		BufferPool:    &bufferPool{},
	}, nil
}

// newTransport makes the upstream's connection pool.
func newTransport(tc TransportConfig) *http.Transport {
	dialer := &net.Dialer{Timeout: tc.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  nil, // never an environment proxy between sidecar and app
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    tc.TLSHandshakeTimeout,
		ResponseHeaderTimeout:  tc.ResponseHeaderTimeout,
		IdleConnTimeout:        tc.IdleConnTimeout,
		MaxIdleConns:           tc.MaxIdleConnsPerHost * 4,
		MaxIdleConnsPerHost:    tc.MaxIdleConnsPerHost,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
}

// bufferPool is an httputil.BufferPool of 32 KiB buffers: it lends the
// reverse proxy the response copy buffers it would otherwise allocate, one
// for every response.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		buf = buf[:cap(buf)]
		b.p.Put(&buf)
	}
}

// rewrite builds the outbound request. Authentication has already happened
// in the handler; this only rewrites URL and headers. It runs after
// ReverseProxy removed hop-by-hop headers, so a client naming an identity
// header in Connection cannot get authgate's value dropped.
func (h *handler) rewrite(pr *httputil.ProxyRequest, target *url.URL) {
	in, out := pr.In, pr.Out
	trusted := h.peerTrusted(in)
	pr.SetURL(target)
	if h.cfg.PreserveHost {
		out.Host = in.Host
	}
	if trusted {
		// ReverseProxy drops these before Rewrite; a trusted hop's
		// values are kept and extended.
		if v := in.Header["X-Forwarded-For"]; len(v) > 0 {
			out.Header["X-Forwarded-For"] = v
		}
		if v := h.ident.forwarded(in.Header["Forwarded"]); len(v) > 0 {
			out.Header["Forwarded"] = v
		}
	} else {
		for _, k := range forwardingHeaders {
			delete(out.Header, k)
		}
	}
	pr.SetXForwarded()
	if trusted {
		for _, k := range [...]string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := in.Header[k]; len(v) > 0 {
				out.Header[k] = v
			}
		}
	}
	// The handler stripped every client spelling of the identity headers
	// and set its own on the inbound request; copy those again in case a
	// hop-by-hop list removed them.
	for _, k := range h.ident.names {
		if v, ok := in.Header[k]; ok {
			out.Header[k] = v
		}
	}
	if h.tracer != nil {
		h.injectTrace(out.Context(), out.Header)
	}
}

// upstreamError answers 502 or 504 with no detail; the cause is logged once,
// in the access log line.
func (h *handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	var cause error
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		cause = context.Canceled
	case isTimeout(err):
		cause = errUpstreamTime
	default:
		cause = errUpstream
	}
	if sw, ok := w.(*statusWriter); ok {
		sw.err = errors.Join(cause, err)
	}
	writeError(w, statusFor(cause))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) ||
		strings.Contains(err.Error(), "timeout awaiting response headers")
}

// serveProxy is reverse-proxy mode.
func (h *handler) serveProxy(w http.ResponseWriter, r *http.Request, out *outcome) {
	if h.upstream == nil {
		out.status = http.StatusNotFound
		writeError(w, out.status)
		return
	}
	p, err := canonicalPath(r.URL.EscapedPath())
	if err != nil {
		out.status, out.err = statusFor(err), err
		writeError(w, out.status)
		return
	}
	pr, ok := h.decide(r.Context(), r.Header, request{host: r.Host, method: r.Method, path: p}, out)
	if out.status != http.StatusOK {
		writeAuthError(w, out.status, out.err)
		return
	}
	vals := identityValues(&pr, ok)
	h.ident.set(r.Header, &vals, false)
	if err := h.setAssertion(r.Header, &pr, ok, &vals, out.route, false); err != nil {
		out.status, out.err = http.StatusInternalServerError, err
		writeError(w, out.status)
		return
	}
	if pr.legacyWarn {
		h.routes[out.route].legacy.setWarning(w.Header())
	}
	// The upstream receives exactly the path that policy saw.
	r.URL.Path, r.URL.RawPath = p, ""

	rc := http.NewResponseController(w)
	if isUpgrade(r) {
		// A WebSocket lives longer than any write timeout.
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
	}
	sw := &statusWriter{ResponseWriter: w, rc: rc}
	var span trace.Span // nil when tracing is off
	if h.tracer != nil {
		r, span = h.startUpstream(r, out.route)
	}
	start := h.now()
	h.upstream.ServeHTTP(sw, r)
	out.status = sw.status
	if out.status == 0 {
		out.status = http.StatusOK
	}
	if sw.err != nil {
		out.err = sw.err
		out.status = statusFor(sw.err)
	}
	if span != nil {
		endUpstream(span, out.status)
	}
	h.metrics.observeUpstream(out.route, out.status, h.now().Sub(start))
}

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && headerHasToken(r.Header["Connection"], "upgrade")
}

func headerHasToken(vals []string, token string) bool {
	for _, v := range vals {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// statusWriter records the status for the access log and lifts the write
// deadline for event streams, which outlive any write timeout.
type statusWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	status int
	err    error
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.status = code
		if strings.HasPrefix(s.Header().Get("Content-Type"), "text/event-stream") {
			_ = s.rc.SetWriteDeadline(time.Time{})
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

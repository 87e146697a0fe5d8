package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/usage"
	"github.com/authgate/authgate/verify"
)

func routeNames(cfg Config) []string {
	out := make([]string, len(cfg.Routes))
	for i, r := range cfg.Routes {
		out[i] = r.Name
	}
	return out
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// counts the handler's own allocations, not a recorder's.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

// fixedVerifier answers one identity without work, to measure the
// handler's own cost apart from token verification.
type fixedVerifier struct{ id verify.Identity }

func (f fixedVerifier) Verify(context.Context, string) (verify.Identity, error) { return f.id, nil }

func benchHandler(b *testing.B, upstream string, access bool, v ...Verifier) *Handler {
	return benchHandlerOpts(b, upstream, access, nil, v...)
}

func benchHandlerOpts(b *testing.B, upstream string, access bool, opts []Option, v ...Verifier) *Handler {
	b.Helper()
	// A production-like logger that writes JSON to nowhere, so the
	// access-log cost is in the numbers when it is on.
	log := zap.NewNop()
	if access {
		log = newDiscardLogger()
	}
	var ver Verifier = newVerifier(b)
	if len(v) > 0 {
		ver = v[0]
	}
	// The migration telemetry is on by default, so it is in the numbers.
	cfg := testConfig(upstream)
	rec, err := usage.New(usage.DefaultConfig(), nil, routeNames(cfg), zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(cfg, ver, log, prometheus.NewRegistry(), append(opts, WithAccessLog(access), WithUsage(rec))...)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkForwardAuth is the forward-auth hot path: a trusted gateway asks
// about a request carrying a valid token. cache=hit is the production case
// (the token was verified before); cache=off verifies the HS256 signature
// every time; verify=stub measures the handler alone. tracing=on samples
// every request into a batching provider whose exporter drops the spans.
func BenchmarkForwardAuth(b *testing.B) {
	fixed := fixedVerifier{verify.Identity{Provider: verify.ProviderLegacy, Subject: "u-1", Email: "u-1@example.test", Role: "user"}}
	noCache := newVerifier(b, func(c *verify.Config) { c.Cache.TTL = -1 })
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	traced := newVerifierOpts(b, nil, []verify.Option{verify.WithTracerProvider(tp)})
	for _, bc := range []struct {
		name   string
		access bool
		v      []Verifier
		opts   []Option
	}{
		{"cache=hit/accesslog=on", true, nil, nil},
		{"cache=hit/accesslog=off", false, nil, nil},
		{"cache=hit/accesslog=off/tracing=on", false, []Verifier{traced}, []Option{WithTracerProvider(tp, nil)}},
		{"cache=off/accesslog=off", false, []Verifier{noCache}, nil},
		{"verify=stub/accesslog=off", false, []Verifier{fixed}, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchHandlerOpts(b, "", bc.access, bc.opts, bc.v...)
			r := httptest.NewRequest("GET", "http://svc/auth", nil)
			r.RemoteAddr = "127.0.0.1:4000"
			r.Header.Set("Authorization", "Bearer "+token(b, "u-1", nil))
			r.Header.Set("X-Forwarded-Method", "GET")
			r.Header.Set("X-Forwarded-Host", "svc")
			r.Header.Set("X-Forwarded-Uri", "/api/orders?page=2")
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				delete(r.Header, headerRequestID)
				clear(w.h)
				h.ServeHTTP(w, r)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// BenchmarkForwardAuthHTTP is the whole forward-auth round trip over
// loopback with keep-alive, as a gateway makes it: client, net/http server,
// handler (cache hit, access log on) and back.
func BenchmarkForwardAuthHTTP(b *testing.B) {
	h := benchHandler(b, "", true)
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	tok := token(b, "u-1", nil)
	client := srv.Client()
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("GET", srv.URL+"/auth", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Forwarded-Host", "svc")
		req.Header.Set("X-Forwarded-Uri", "/api/orders?page=2")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkProxy is reverse-proxy mode in front of a trivial upstream.
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	b.Cleanup(up.Close)
	h := benchHandler(b, up.URL, false)
	tok := token(b, "u-1", nil)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("GET", "http://svc/api/orders", nil)
		r.RemoteAddr = "203.0.113.9:4000"
		r.Header.Set("Authorization", "Bearer "+tok)
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	for _, p := range []string{"/api/v1/orders/42", "/api//v1/./orders/%34%32"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := canonicalPath(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIdentityHeaders is the header contract on every request: strip
// every client spelling of the identity headers and of the other proxies'
// (defaultStripHeaders), then set authgate's own (the full set, as
// forward-auth answers carry it).
func BenchmarkIdentityHeaders(b *testing.B) {
	ident := newIdentityHeaders("X-User-", defaultStripHeaders)
	p := principal{id: verify.Identity{Provider: verify.ProviderFirebase, Subject: "uid-1", FirebaseUID: "uid-1", Email: "u@example.test", EmailVerified: true, Name: "U", Role: "user"}}
	vals := identityValues(&p, true)
	inbound := http.Header{
		"Accept": {"*/*"}, "Authorization": {"Bearer x"}, "User-Agent": {"bench"},
		"X-Forwarded-Uri": {"/api/orders"}, "X-Request-Id": {"r-1"},
	}
	for _, bc := range []struct {
		name    string
		spoof   bool
		foreign bool
	}{{"clean", false, false}, {"spoofed", true, false}, {"spoofed-foreign", false, true}} {
		b.Run(bc.name, func(b *testing.B) {
			hdr := inbound.Clone()
			out := http.Header{}
			b.ReportAllocs()
			for b.Loop() {
				if bc.spoof {
					hdr["X-User-Id"] = vals[:1]
					hdr["X_user_type"] = vals[:1]
				}
				if bc.foreign {
					hdr["X-Auth-Request-User"] = vals[:1]
					hdr["X_forwarded_user"] = vals[:1]
				}
				ident.strip(hdr)
				ident.set(out, &vals, true)
			}
		})
	}
}

// BenchmarkStripHeaders is the strip alone on a browser-like request of
// fourteen headers, half of them X-*: the cost of checking each name
// against the prefix and the strip_headers list.
func BenchmarkStripHeaders(b *testing.B) {
	ident := newIdentityHeaders("X-User-", defaultStripHeaders)
	inbound := http.Header{
		"Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "Accept-Language": {"en"}, "Authorization": {"Bearer x"},
		"Cookie": {"a=b"}, "User-Agent": {"bench"}, "Content-Type": {"application/json"}, "Traceparent": {"00-x"},
		"X-Forwarded-For": {"203.0.113.9"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"app"},
		"X-Forwarded-Uri": {"/api/orders"}, "X-Forwarded-Method": {"GET"}, "X-Request-Id": {"r-1"},
	}
	for _, bc := range []struct {
		name  string
		spoof []string
	}{
		{"clean", nil},
		{"spoofed", []string{"X-User-Id", "X_user_type"}},
		{"spoofed-foreign", []string{"X-Auth-Request-User", "X_forwarded_user", "Remote-User"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			hdr := inbound.Clone()
			v := []string{"evil"}
			b.ReportAllocs()
			for b.Loop() {
				for _, k := range bc.spoof {
					hdr[k] = v
				}
				ident.strip(hdr)
			}
			if len(hdr) != len(inbound) {
				b.Fatalf("strip left %d headers, want %d", len(hdr), len(inbound))
			}
		})
	}
}

// BenchmarkOriginalRequest reads the original request from a Traefik-style
// forward-auth subrequest: trust check, header families, path checks and
// canonicalisation.
func BenchmarkOriginalRequest(b *testing.B) {
	h := benchHandler(b, "", false)
	r := httptest.NewRequest("GET", "http://svc/auth", nil)
	r.RemoteAddr = "127.0.0.1:4000"
	r.Header.Set("X-Forwarded-Method", "GET")
	r.Header.Set("X-Forwarded-Host", "app.example.test")
	r.Header.Set("X-Forwarded-Uri", "/api/v1/orders/42?page=2")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.cur.Load().originalRequest(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestMetrics is the metric work every request does in proxy
// (a counter and a histogram, pre-resolved), to set beside
// BenchmarkForwardAuth: metrics cannot be turned off, so their overhead is
// measured on its own.
func BenchmarkRequestMetrics(b *testing.B) {
	v, err := newMetricVecs(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	m := v.resolve([]string{"public", "default"})
	b.ReportAllocs()
	for b.Loop() {
		m.observe(modeForwardAuth, 1, 200, 5*time.Microsecond)
	}
}

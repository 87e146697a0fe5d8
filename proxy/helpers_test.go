package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

const testIssuer = "https://auth.example.test"

// testRoutes is the route table most tests use.
var testRoutes = []RouteConfig{
	{Name: "public", Path: "/public/", Access: AccessPublic},
	{Name: "admin", Path: "/admin", Require: Requirements{UserType: []string{"admin"}}},
	{Name: "verified", Path: "/verified", Require: Requirements{EmailVerified: true}},
	{Name: "beta", Path: "/beta", Require: Requirements{Claims: map[string][]string{"plan": {"beta", "pro"}}}},
	{Name: "blocked", Path: "/blocked", Access: AccessDeny},
	{Name: "files", Path: "/files/*/meta"},
	{Name: "api-write", Path: "/api", Methods: []string{"POST"}, Require: Requirements{UserType: []string{"admin"}}},
	{Name: "api", Host: "api.example.test", Path: "/api"},
	{Name: "default", Host: "svc", Path: "/"},
	{Name: "default-example", Host: "*.example.test", Path: "/"},
}

// newVerifier is the real legacy verifier with its in-process cache;
// edit may change the config (for example to turn the cache off).
func newVerifier(t testing.TB, edit ...func(*verify.Config)) *verify.Verifier {
	t.Helper()
	return newVerifierOpts(t, edit, nil)
}

// newVerifierOpts is newVerifier with verify options.
func newVerifierOpts(t testing.TB, edit []func(*verify.Config), opts []verify.Option) *verify.Verifier {
	t.Helper()
	cfg := verify.DefaultConfig()
	cfg.Legacy = configtest.Fill(verify.LegacyConfig{
		Enabled: true, Issuer: testIssuer, Audience: "platform",
		Secrets: []secret.Secret{verifytest.Secret},
	}, verify.DefaultLegacyConfig())
	for _, e := range edit {
		e(&cfg)
	}
	v, err := verify.New(cfg, zap.NewNop(), nil, opts...)
	if err != nil {
		t.Fatalf("verify.New: %v", err)
	}
	return v
}

// testConfig returns a config for tests: the test routes, loopback trusted.
func testConfig(upstream string) Config {
	cfg := DefaultConfig()
	cfg.Upstream = upstream
	cfg.TrustedProxies = []string{"127.0.0.1/32", "::1/128", "192.0.2.1/32"}
	cfg.Routes = testRoutes
	return cfg
}

func newHandler(t testing.TB, cfg Config, opts ...Option) *Handler {
	t.Helper()
	log := zap.NewNop()
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt)
	}
	h, err := New(cfg, newVerifier(t), log, prometheus.NewRegistry(), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// token mints a valid legacy token for sub with extra claims applied.
func token(t testing.TB, sub string, edit func(map[string]any)) string {
	t.Helper()
	c := verifytest.Claims(sub, time.Now())
	if edit != nil {
		edit(c)
	}
	return verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), c, nil)
}

func forgedToken(t testing.TB, sub string) string {
	t.Helper()
	return verifytest.HMAC(t, jose.HS256, []byte("another-secret-of-at-least-32-bytes!!"), verifytest.Claims(sub, time.Now()), nil)
}

// upstream is a test backend that records what it received.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("X-Upstream", "yes")
		_, _ = io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) last(t *testing.T) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

// rawRequest sends req verbatim over a new TCP connection to addr, so that
// header spellings reach the server exactly as written, and returns the
// response.
func rawRequest(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// headersWithPrefix returns every header of h whose folded name starts with
// "x-user", as "Name: value" lines.
func headersWithPrefix(h http.Header) []string {
	var out []string
	for k, vs := range h {
		if strings.HasPrefix(foldHeader(k), "x-user") {
			for _, v := range vs {
				out = append(out, fmt.Sprintf("%s: %s", k, v))
			}
		}
	}
	return out
}

// serve runs one request through h with httptest, from remote.
func serve(h http.Handler, r *http.Request, remote string) *httptest.ResponseRecorder {
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

package verifytest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// KeyServer is a local key endpoint: it serves a key document and counts
// the requests it gets, and can be told to fail, hang or serve garbage, as
// Google's endpoint or an identity provider's JWKS URL might. It is safe
// for concurrent use. A new KeyServer answers 404 until a document is set.
type KeyServer struct {
	// URL is the endpoint, for KeySetConfig.URL.
	URL string

	requests atomic.Int64
	closed   chan struct{}

	mu           sync.Mutex
	status       int
	body         []byte
	cacheControl string
	hang         bool
}

// NewKeyServer starts a key endpoint that stops when the test ends.
func NewKeyServer(tb testing.TB) *KeyServer {
	tb.Helper()
	s := &KeyServer{status: http.StatusNotFound, closed: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = srv.URL
	tb.Cleanup(srv.Close)
	// Cleanups run last-in first-out: hung handlers return before Close
	// waits for them.
	tb.Cleanup(func() { close(s.closed) })
	return s
}

func (s *KeyServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	status, body, cc, hang := s.status, s.body, s.cacheControl, s.hang
	s.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Requests returns how many requests the server has received.
func (s *KeyServer) Requests() int { return int(s.requests.Load()) }

// ServeX509 serves keys in the format of Google's securetoken endpoint: a
// JSON object of kid → PEM certificate.
func (s *KeyServer) ServeX509(tb testing.TB, keys ...*Key) {
	tb.Helper()
	doc := make(map[string]string, len(keys))
	for _, k := range keys {
		doc[k.ID] = string(k.CertificatePEM(tb))
	}
	s.serveJSON(tb, doc)
}

// ServePEM serves a JSON object of kid → PEM public key (not a
// certificate), which some providers publish.
func (s *KeyServer) ServePEM(tb testing.TB, keys ...*Key) {
	tb.Helper()
	doc := make(map[string]string, len(keys))
	for _, k := range keys {
		doc[k.ID] = string(k.PublicKeyPEM(tb))
	}
	s.serveJSON(tb, doc)
}

// ServeJWKS serves keys as a JSON Web Key Set.
func (s *KeyServer) ServeJWKS(tb testing.TB, keys ...*Key) {
	tb.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.JWK())
	}
	s.serveJSON(tb, set)
}

// ServeJWK serves the given JSON Web Keys as they are, for documents whose
// keys declare an algorithm or use of their own.
func (s *KeyServer) ServeJWK(tb testing.TB, keys ...jose.JSONWebKey) {
	tb.Helper()
	s.serveJSON(tb, jose.JSONWebKeySet{Keys: keys})
}

func (s *KeyServer) serveJSON(tb testing.TB, doc any) {
	tb.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		tb.Fatalf("marshal key document: %v", err)
	}
	s.Serve(http.StatusOK, string(b))
}

// Serve answers every request with status and body from now on: garbage,
// an empty document, an error page.
func (s *KeyServer) Serve(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body, s.hang = status, []byte(body), false
}

// Fail answers every request with 500 from now on, until a document is set
// again.
func (s *KeyServer) Fail() { s.Serve(http.StatusInternalServerError, `{"error":"backend error"}`) }

// Hang holds every request from now on until the client gives up (or the
// test ends), until a document is set again.
func (s *KeyServer) Hang() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = true
}

// SetCacheControl sets the Cache-Control header of the answers ("" for
// none), such as Google's "public, max-age=19302, must-revalidate,
// no-transform".
func (s *KeyServer) SetCacheControl(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cacheControl = v
}

// Clock is a fake clock for verify.WithClock: it stands still until the
// test moves it. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

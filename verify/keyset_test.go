package verify_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"github.com/authgate/authgate/internal/configtest"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

// keySetConfig is fx's ID tokens only, with keys configured by ks and the
// token cache off, so that every Verify consults the key set.
func keySetConfig(fx *firebaseFixture, ks verify.KeySetConfig) verify.Config {
	cfg := fx.config()
	ks.URL = fx.ids.URL
	cfg.Firebase.Keys = ks
	cfg.Firebase.SessionCookies = verify.SessionCookieConfig{}
	cfg.Cache.TTL = -1
	return cfg
}

// randomKidTokens returns n copies of tok, each with a random kid in its
// header: what an attacker sends to make authgate fetch keys.
func randomKidTokens(tb testing.TB, tok string, n int) []string {
	tb.Helper()
	parts := strings.Split(tok, ".")
	out := make([]string, n)
	for i := range out {
		h := b64(`{"alg":"RS256","typ":"JWT","kid":"` + rand.Text() + `"}`)
		out[i] = h + "." + parts[1] + "." + parts[2]
	}
	return out
}

// verifyAll verifies toks on 16 goroutines and returns the errors.
func verifyAll(ctx context.Context, v *verify.Verifier, toks []string) []error {
	errs := make([]error, len(toks))
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < len(toks); i += 16 {
				_, errs[i] = v.Verify(ctx, toks[i])
			}
		})
	}
	wg.Wait()
	return errs
}

func TestKeySetFetchedOnce(t *testing.T) {
	fx := newFirebaseFixture(t)
	v := fx.newVerifier(t, keySetConfig(fx, configtest.Fill(verify.KeySetConfig{}, verify.DefaultKeySetConfig())))
	toks := make([]string, 200)
	for i := range toks {
		toks[i] = fx.id.Sign(t, firebaseClaims(), nil)
	}

	if got := fx.ids.Requests(); got != 0 {
		t.Fatalf("key fetches before the first token = %d, want 0", got)
	}
	for i, err := range verifyAll(t.Context(), v, toks) {
		if err != nil {
			t.Fatalf("Verify(token %d) error = %v, want nil", i, err)
		}
	}
	if got := fx.ids.Requests(); got != 1 {
		t.Errorf("key fetches after %d concurrent verifications = %d, want 1", len(toks), got)
	}
}

func TestKeySetRotation(t *testing.T) {
	fx := newFirebaseFixture(t)
	v := fx.newVerifier(t, keySetConfig(fx, configtest.Fill(verify.KeySetConfig{MinRefreshInterval: 30 * time.Second}, verify.DefaultKeySetConfig())))
	k1, k2, k3 := fx.id, verifytest.RSAKey(t, "id-key-2"), verifytest.RSAKey(t, "id-key-3")
	tok1, tok2, tok3 := k1.Sign(t, firebaseClaims(), nil), k2.Sign(t, firebaseClaims(), nil), k3.Sign(t, firebaseClaims(), nil)

	// Each step may change the served keys, then moves the clock, then
	// verifies one token.
	steps := []struct {
		name        string
		giveServe   []*verifytest.Key // nil: unchanged
		giveAdvance time.Duration
		giveToken   string
		wantErr     error
		wantFetches int
	}{
		{name: "first token fetches the keys", giveToken: tok1, wantFetches: 1},
		{name: "kid not published yet, refresh within the interval suppressed", giveToken: tok2, wantErr: verify.ErrInvalid, wantFetches: 1},
		{name: "new key published, still within the interval", giveServe: []*verifytest.Key{k1, k2}, giveAdvance: 10 * time.Second, giveToken: tok2, wantErr: verify.ErrInvalid, wantFetches: 1},
		{name: "past the interval the unknown kid refreshes", giveAdvance: 21 * time.Second, giveToken: tok2, wantFetches: 2},
		{name: "old key still accepted", giveToken: tok1, wantFetches: 2},
		{name: "old key removed, but no refresh yet", giveServe: []*verifytest.Key{k2, k3}, giveAdvance: 31 * time.Second, giveToken: tok1, wantFetches: 2},
		{name: "a newer key refreshes the set", giveToken: tok3, wantFetches: 3},
		{name: "old key refused after the refresh", giveToken: tok1, wantErr: verify.ErrInvalid, wantFetches: 3},
		{name: "old key refused after the next refresh too", giveAdvance: 31 * time.Second, giveToken: tok1, wantErr: verify.ErrInvalid, wantFetches: 4},
		{name: "current keys unaffected", giveToken: tok2, wantFetches: 4},
	}

	for i, s := range steps {
		if s.giveServe != nil {
			fx.ids.ServeX509(t, s.giveServe...)
		}
		fx.clock.Advance(s.giveAdvance)
		_, err := v.Verify(t.Context(), s.giveToken)
		if !errors.Is(err, s.wantErr) {
			t.Errorf("step %d (%s): Verify() error = %v, want %v", i, s.name, err, s.wantErr)
		}
		if got := fx.ids.Requests(); got != s.wantFetches {
			t.Errorf("step %d (%s): key fetches = %d, want %d", i, s.name, got, s.wantFetches)
		}
	}
}

// TestKeySetKidFlood sends waves of 1000 tokens with made-up kids: each
// wave may cost at most one fetch, and only once min_refresh_interval has
// passed since the last.
func TestKeySetKidFlood(t *testing.T) {
	fx := newFirebaseFixture(t)
	// The token cache stays on, as in production: every flood token is a
	// miss, and unknown kids are not negatively cached.
	cfg := fx.config()
	cfg.Firebase.Keys.MinRefreshInterval = 30 * time.Second
	v := fx.newVerifier(t, cfg)
	valid := fx.id.Sign(t, firebaseClaims(), nil)
	if _, err := v.Verify(t.Context(), valid); err != nil {
		t.Fatalf("Verify(valid) error = %v", err)
	}

	waves := []struct {
		name        string
		giveAdvance time.Duration
		wantFetches int
	}{
		{name: "right after the first fetch", wantFetches: 1},
		{name: "10s later", giveAdvance: 10 * time.Second, wantFetches: 1},
		{name: "past the interval", giveAdvance: 21 * time.Second, wantFetches: 2},
		{name: "again at once", wantFetches: 2},
		{name: "29s later", giveAdvance: 29 * time.Second, wantFetches: 2},
		{name: "past the interval again", giveAdvance: 2 * time.Second, wantFetches: 3},
	}

	for i, w := range waves {
		fx.clock.Advance(w.giveAdvance)
		for j, err := range verifyAll(t.Context(), v, randomKidTokens(t, valid, 1000)) {
			if !errors.Is(err, verify.ErrInvalid) {
				t.Fatalf("wave %d (%s): Verify(token %d) error = %v, want %v", i, w.name, j, err, verify.ErrInvalid)
			}
		}
		got := fx.ids.Requests()
		t.Logf("wave %d (%s): 1000 tokens with random kids, %d key fetches in all", i, w.name, got)
		if got != w.wantFetches {
			t.Errorf("wave %d (%s): key fetches = %d, want %d", i, w.name, got, w.wantFetches)
		}
	}
	// The real kid still works throughout.
	if _, err := v.Verify(t.Context(), fx.id.Sign(t, firebaseClaims("name", "after the flood"), nil)); err != nil {
		t.Errorf("Verify(valid) after the flood error = %v, want nil", err)
	}
}

// TestKeySetOutage follows the key endpoint failing after a good fetch:
// the last good keys stay in use for max-age + max_stale, health degrades
// meanwhile, and then verification stops with ErrKeysUnavailable until the
// endpoint is back.
func TestKeySetOutage(t *testing.T) {
	fx := newFirebaseFixture(t)
	fx.ids.SetCacheControl("public, max-age=3600, must-revalidate, no-transform")
	v := fx.newVerifier(t, keySetConfig(fx, configtest.Fill(verify.KeySetConfig{
		FetchTimeout:       50 * time.Millisecond,
		MinRefreshInterval: 30 * time.Second,
		MaxStale:           2 * time.Hour,
	}, verify.DefaultKeySetConfig())))
	tok := fx.id.Sign(t, firebaseClaims("exp", testNow.Add(24*time.Hour).Unix()), nil)
	unknownKid := randomKidTokens(t, tok, 1)[0]
	serve := func() { fx.ids.ServeX509(t, fx.id) }

	steps := []struct {
		name         string
		give         func() // changes the endpoint; nil: unchanged
		giveAdvance  time.Duration
		giveToken    string
		wantErr      error
		wantFetches  int
		wantCheckErr bool // Verifier.Check: keys unusable
		wantStale    bool // Verifier.KeysFresh: degraded or worse
	}{
		{name: "first fetch", giveToken: tok, wantFetches: 1},
		{name: "endpoint fails, keys within max-age", give: fx.ids.Fail, giveAdvance: 59 * time.Minute, giveToken: tok, wantFetches: 1},
		{name: "max-age passed: a refresh fails", giveAdvance: time.Minute + time.Second, giveToken: unknownKid, wantErr: verify.ErrInvalid, wantFetches: 2, wantStale: true},
		{name: "last good keys still verify", giveToken: tok, wantFetches: 2, wantStale: true},
		{name: "just within max_stale", giveAdvance: 2*time.Hour - 2*time.Second, giveToken: tok, wantFetches: 2, wantStale: true},
		{name: "past max-age + max_stale", giveAdvance: 2 * time.Second, giveToken: tok, wantErr: verify.ErrKeysUnavailable, wantFetches: 3, wantCheckErr: true, wantStale: true},
		{name: "again within the interval: no fetch", giveAdvance: 10 * time.Second, giveToken: tok, wantErr: verify.ErrKeysUnavailable, wantFetches: 3, wantCheckErr: true, wantStale: true},
		{name: "unknown kid within the interval: no fetch", giveToken: unknownKid, wantErr: verify.ErrKeysUnavailable, wantFetches: 3, wantCheckErr: true, wantStale: true},
		{name: "endpoint hangs past fetch_timeout", give: fx.ids.Hang, giveAdvance: 30 * time.Second, giveToken: tok, wantErr: verify.ErrKeysUnavailable, wantFetches: 4, wantCheckErr: true, wantStale: true},
		{name: "endpoint serves garbage", give: func() { fx.ids.Serve(http.StatusOK, "<html>maintenance</html>") }, giveAdvance: 30 * time.Second, giveToken: tok, wantErr: verify.ErrKeysUnavailable, wantFetches: 5, wantCheckErr: true, wantStale: true},
		{name: "endpoint back", give: serve, giveAdvance: 30 * time.Second, giveToken: tok, wantFetches: 6},
	}

	for i, s := range steps {
		if s.give != nil {
			s.give()
		}
		fx.clock.Advance(s.giveAdvance)
		start := time.Now()
		_, err := v.Verify(t.Context(), s.giveToken)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("step %d (%s): Verify() took %v, want it bounded by fetch_timeout", i, s.name, took)
		}
		if !errors.Is(err, s.wantErr) {
			t.Errorf("step %d (%s): Verify() error = %v, want %v", i, s.name, err, s.wantErr)
		}
		if got := fx.ids.Requests(); got != s.wantFetches {
			t.Errorf("step %d (%s): key fetches = %d, want %d", i, s.name, got, s.wantFetches)
		}
		checkErr := v.Check(t.Context())
		if got := checkErr != nil; got != s.wantCheckErr {
			t.Errorf("step %d (%s): Check() = %v, want error %t", i, s.name, checkErr, s.wantCheckErr)
		}
		freshErr := v.KeysFresh(t.Context())
		if got := freshErr != nil; got != s.wantStale {
			t.Errorf("step %d (%s): KeysFresh() = %v, want error %t", i, s.name, freshErr, s.wantStale)
		}
		t.Logf("step %d (%s) at +%v: Verify error %v; %d fetches; Check %v; KeysFresh %v",
			i, s.name, fx.clock.Now().Sub(testNow), err, fx.ids.Requests(), checkErr, freshErr)
	}
}

// TestKeySetHugeMaxAge checks that a max-age too large for a
// time.Duration is capped (RFC 9111 §1.2.2) instead of overflowing into
// keys that expired centuries ago, which failed readiness right after a
// good fetch.
func TestKeySetHugeMaxAge(t *testing.T) {
	fx := newFirebaseFixture(t)
	fx.ids.SetCacheControl("public, max-age=9223372037")
	v := fx.newVerifier(t, keySetConfig(fx, configtest.Fill(verify.KeySetConfig{}, verify.DefaultKeySetConfig())))

	if _, err := v.Verify(t.Context(), fx.id.Sign(t, firebaseClaims(), nil)); err != nil {
		t.Fatalf("Verify() error = %v, want nil", err)
	}
	if err := v.Check(t.Context()); err != nil {
		t.Errorf("Check() after a good fetch = %v, want nil", err)
	}
	if err := v.KeysFresh(t.Context()); err != nil {
		t.Errorf("KeysFresh() after a good fetch = %v, want nil", err)
	}
}

// TestKeySetFirstFetchFails checks a key set that never had keys: tokens
// are refused with ErrKeysUnavailable (authgate's failure, not the
// client's), at most one fetch per interval, until the endpoint answers.
func TestKeySetFirstFetchFails(t *testing.T) {
	tests := []struct {
		name string
		give func(s *verifytest.KeyServer)
	}{
		{name: "500", give: (*verifytest.KeyServer).Fail},
		{name: "hang past fetch_timeout", give: (*verifytest.KeyServer).Hang},
		{name: "404", give: func(s *verifytest.KeyServer) { s.Serve(http.StatusNotFound, "not found") }},
		{name: "garbage", give: func(s *verifytest.KeyServer) { s.Serve(http.StatusOK, "<html>") }},
		{name: "empty object", give: func(s *verifytest.KeyServer) { s.Serve(http.StatusOK, "{}") }},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFirebaseFixture(t)
			v := fx.newVerifier(t, keySetConfig(fx, configtest.Fill(verify.KeySetConfig{FetchTimeout: 50 * time.Millisecond}, verify.DefaultKeySetConfig())))
			tok := fx.id.Sign(t, firebaseClaims("exp", testNow.Add(24*time.Hour).Unix()), nil)
			if err := v.Check(t.Context()); err == nil {
				t.Errorf("Check() before any fetch = nil, want an error")
			}
			tt.give(fx.ids)

			for i := range 3 {
				if _, err := v.Verify(t.Context(), tok); !errors.Is(err, verify.ErrKeysUnavailable) {
					t.Errorf("Verify() #%d error = %v, want %v", i, err, verify.ErrKeysUnavailable)
				}
			}
			if got := fx.ids.Requests(); got != 1 {
				t.Errorf("key fetches after 3 tokens = %d, want 1", got)
			}
			if err := v.Check(t.Context()); err == nil {
				t.Errorf("Check() without keys = nil, want an error")
			}

			fx.ids.ServeX509(t, fx.id)
			fx.clock.Advance(30 * time.Second)
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Errorf("Verify() once the endpoint answers error = %v, want nil", err)
			}
			if err := v.Check(t.Context()); err != nil {
				t.Errorf("Check() with keys = %v, want nil", err)
			}
		})
	}
}

// TestKeySetBadDocument checks that a key document that cannot be used
// fails the fetch and leaves the last good keys in place.
func TestKeySetBadDocument(t *testing.T) {
	private := verifytest.RSAKey(t, "private")
	encryption := verifytest.RSAKey(t, "enc").JWK()
	encryption.Use = "enc"

	tests := []struct {
		name       string
		giveStatus int
		giveBody   string
		giveJWKS   []jose.JSONWebKey // served instead of body when set
	}{
		{name: "HTML", giveStatus: http.StatusOK, giveBody: "<html><body>Service Unavailable</body></html>"},
		{name: "empty body", giveStatus: http.StatusOK, giveBody: ""},
		{name: "empty object", giveStatus: http.StatusOK, giveBody: "{}"},
		{name: "empty JWKS", giveStatus: http.StatusOK, giveBody: `{"keys":[]}`},
		{name: "JSON array", giveStatus: http.StatusOK, giveBody: "[]"},
		{name: "JSON null", giveStatus: http.StatusOK, giveBody: "null"},
		{name: "truncated JSON", giveStatus: http.StatusOK, giveBody: `{"keys":[{"kty":"RSA",`},
		{name: "value not a string", giveStatus: http.StatusOK, giveBody: `{"id-key-1":1}`},
		{name: "value not PEM", giveStatus: http.StatusOK, giveBody: `{"id-key-1":"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"}`},
		{name: "PEM that is not a key", giveStatus: http.StatusOK, giveBody: `{"id-key-1":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}`},
		{name: "larger than 1 MiB", giveStatus: http.StatusOK, giveBody: `{"pad":"` + strings.Repeat("x", 1<<20) + `"}`},
		{name: "private keys only", giveJWKS: []jose.JSONWebKey{{Key: private.Private, KeyID: private.ID, Use: "sig"}}},
		{name: "encryption keys only", giveJWKS: []jose.JSONWebKey{encryption}},
		{name: "503", giveStatus: http.StatusServiceUnavailable, giveBody: `{"keys":[]}`},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFirebaseFixture(t)
			v := fx.newVerifier(t, keySetConfig(fx, configtest.Fill(verify.KeySetConfig{}, verify.DefaultKeySetConfig())))
			tok := fx.id.Sign(t, firebaseClaims("exp", testNow.Add(24*time.Hour).Unix()), nil)
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("Verify() with good keys error = %v", err)
			}

			fx.ids.Serve(tt.giveStatus, tt.giveBody)
			if tt.giveJWKS != nil {
				fx.ids.ServeJWK(t, tt.giveJWKS...)
			}
			fx.clock.Advance(time.Minute)
			if err := v.Prefetch(t.Context()); err == nil {
				t.Errorf("Prefetch() of a bad document = nil, want an error")
			}
			if got := fx.ids.Requests(); got != 2 {
				t.Errorf("key fetches = %d, want 2", got)
			}
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Errorf("Verify() after a bad document error = %v, want nil (old keys kept)", err)
			}
			if err := v.Check(t.Context()); err != nil {
				t.Errorf("Check() after a bad document = %v, want nil (old keys fresh)", err)
			}
		})
	}
}

// TestVerifierRun checks that Run fetches the keys at once and returns nil
// when its context ends.
func TestVerifierRun(t *testing.T) {
	fx := newFirebaseFixture(t)
	doc, err := json.Marshal(map[string]string{fx.id.ID: string(fx.id.CertificatePEM(t))})
	if err != nil {
		t.Fatal(err)
	}
	fetched := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(doc)
		select {
		case fetched <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	cfg := keySetConfig(fx, configtest.Fill(verify.KeySetConfig{}, verify.DefaultKeySetConfig()))
	cfg.Firebase.Keys.URL = srv.URL
	v := fx.newVerifier(t, cfg)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	<-fetched
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
}

// TestPrefetchFetchesKeySetsAtOnce: a start fetches the ID-token and
// session-cookie keys at the same time, so that it waits for the slower
// endpoint rather than for both in turn. Both endpoints hang; both must
// have been asked before either answers.
func TestPrefetchFetchesKeySetsAtOnce(t *testing.T) {
	fx := newFirebaseFixture(t)
	fx.ids.Hang()
	fx.sessions.Hang()
	cfg := fx.config()
	// Longer than the wait below: fetched one after the other, the
	// second would not be asked before the first gave up.
	cfg.Firebase.Keys.FetchTimeout = time.Minute
	cfg.Firebase.SessionCookies.Keys.FetchTimeout = time.Minute
	v := fx.newVerifier(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- v.Prefetch(ctx) }()

	both := time.NewTimer(10 * time.Second) // a bound for the failure only
	defer both.Stop()
	for fx.ids.Requests() == 0 || fx.sessions.Requests() == 0 {
		select {
		case <-both.C:
			t.Fatalf("requests: ID-token keys %d, session-cookie keys %d; want both in flight at once",
				fx.ids.Requests(), fx.sessions.Requests())
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	err := <-done
	for _, name := range []string{"firebase keys", "firebase_session keys"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Prefetch() after both endpoints hung = %v, want an error naming %q", err, name)
		}
	}
}

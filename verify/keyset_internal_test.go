package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"github.com/authgate/authgate/internal/configtest"
	"reflect"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify/verifytest"
)

// TestKeySetRunFollowsMaxAge drives the background refresh with a sleep
// that moves a fake clock: run must wait for the max-age of each answer,
// retry a failed fetch every MinRefreshInterval, and never poll faster.
func TestKeySetRunFollowsMaxAge(t *testing.T) {
	srv := verifytest.NewKeyServer(t)
	key := verifytest.RSAKey(t, "k1")
	srv.ServeX509(t, key)
	srv.SetCacheControl("public, max-age=600, must-revalidate, no-transform")
	clk := verifytest.NewClock(time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC))
	ks := newKeySet("firebase", configtest.Fill(KeySetConfig{URL: srv.URL, MinRefreshInterval: 30 * time.Second}, DefaultKeySetConfig()), clk.Now, zaptest.NewLogger(t), nil)

	// Each step is one sleep of run: what it asked for, what had happened
	// by then, and how the endpoint changes while it sleeps.
	steps := []struct {
		name         string
		wantWait     time.Duration
		wantFetches  int
		wantDegraded bool
		give         func()
	}{
		{name: "max-age 600s", wantWait: 600 * time.Second, wantFetches: 1, give: func() { srv.SetCacheControl("max-age=120") }},
		{name: "max-age 120s", wantWait: 120 * time.Second, wantFetches: 2, give: srv.Fail},
		{name: "failed at max-age: retry after the interval", wantWait: 30 * time.Second, wantFetches: 3},
		{name: "failed again, past max-age", wantWait: 30 * time.Second, wantFetches: 4, wantDegraded: true, give: func() {
			srv.ServeX509(t, key)
			srv.SetCacheControl("max-age=0")
		}},
		{name: "max-age 0: no faster than the interval", wantWait: 30 * time.Second, wantFetches: 5, give: func() { srv.SetCacheControl("") }},
		{name: "no max-age: default 1h", wantWait: time.Hour, wantFetches: 6},
	}
	type sleep struct {
		wait     time.Duration
		fetches  int
		degraded bool
	}
	var got []sleep

	ks.run(t.Context(), func(_ context.Context, d time.Duration) bool {
		if len(got) == len(steps) {
			return false
		}
		got = append(got, sleep{wait: d, fetches: srv.Requests(), degraded: errors.Is(ks.check(), errDegraded)})
		if give := steps[len(got)-1].give; give != nil {
			give()
		}
		clk.Advance(d)
		return true
	})

	if len(got) != len(steps) {
		t.Fatalf("run slept %d times, want %d: %+v", len(got), len(steps), got)
	}
	for i, s := range steps {
		if got[i].wait != s.wantWait || got[i].fetches != s.wantFetches || got[i].degraded != s.wantDegraded {
			t.Errorf("sleep %d (%s) = %v after %d fetches, degraded %t; want %v after %d, degraded %t",
				i, s.name, got[i].wait, got[i].fetches, got[i].degraded, s.wantWait, s.wantFetches, s.wantDegraded)
		}
	}
	if _, err := ks.key(t.Context(), key.ID); err != nil {
		t.Errorf("key(%q) after run = %v, want nil", key.ID, err)
	}
}

// TestKeySetShortMaxAgeIsNotDegraded checks readiness against a key
// endpoint whose max-age is shorter than MinRefreshInterval: run fetches
// once per interval, so the keys spend most of it past their max-age, and
// yet every fetch succeeds. Only a refresh that came due and failed makes
// the set degraded (issue 12).
func TestKeySetShortMaxAgeIsNotDegraded(t *testing.T) {
	srv := verifytest.NewKeyServer(t)
	key := verifytest.RSAKey(t, "k1")
	srv.ServeX509(t, key)
	srv.SetCacheControl("max-age=10")
	clk := verifytest.NewClock(time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC))
	ks := newKeySet("firebase", configtest.Fill(KeySetConfig{URL: srv.URL, MinRefreshInterval: 30 * time.Second, MaxStale: time.Hour}, DefaultKeySetConfig()), clk.Now, zaptest.NewLogger(t), nil)

	// Each step is one sleep of run; the set is checked just before the
	// sleep ends, 29s into a 30s interval, 19s past the keys' max-age.
	steps := []struct {
		name         string
		wantFetches  int
		wantDegraded bool
		give         func() // changes the endpoint before the sleep ends
	}{
		{name: "first fetch", wantFetches: 1},
		{name: "second fetch", wantFetches: 2},
		{name: "third fetch", wantFetches: 3, give: srv.Fail},
		{name: "refresh due and failed", wantFetches: 4, wantDegraded: true},
		{name: "failed again", wantFetches: 5, wantDegraded: true, give: func() { srv.ServeX509(t, key) }},
		{name: "endpoint back", wantFetches: 6},
		{name: "and again", wantFetches: 7},
	}
	type sleep struct {
		fetches  int
		degraded bool
	}
	var got []sleep

	ks.run(t.Context(), func(_ context.Context, d time.Duration) bool {
		if len(got) == len(steps) {
			return false
		}
		clk.Advance(d - time.Second)
		err := ks.check()
		if err != nil && !errors.Is(err, errDegraded) {
			t.Errorf("sleep %d: check() = %v, want nil or degraded", len(got), err)
		}
		got = append(got, sleep{fetches: srv.Requests(), degraded: err != nil})
		if give := steps[len(got)-1].give; give != nil {
			give()
		}
		clk.Advance(time.Second)
		return true
	})

	if len(got) != len(steps) {
		t.Fatalf("run slept %d times, want %d: %+v", len(got), len(steps), got)
	}
	for i, s := range steps {
		if got[i].fetches != s.wantFetches || got[i].degraded != s.wantDegraded {
			t.Errorf("sleep %d (%s): %d fetches, degraded %t; want %d, degraded %t",
				i, s.name, got[i].fetches, got[i].degraded, s.wantFetches, s.wantDegraded)
		}
	}
}

// TestKeySetRunStopsWhenDone checks that run returns when its sleep
// reports that ctx ended, and does not fetch once ctx is done.
func TestKeySetRunStopsWhenDone(t *testing.T) {
	srv := verifytest.NewKeyServer(t)
	srv.ServeX509(t, verifytest.RSAKey(t, "k1"))
	clk := verifytest.NewClock(time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC))
	ks := newKeySet("firebase", configtest.Fill(KeySetConfig{URL: srv.URL}, DefaultKeySetConfig()), clk.Now, zaptest.NewLogger(t), nil)
	ctx, cancel := context.WithCancel(t.Context())

	sleeps := 0
	ks.run(ctx, func(context.Context, time.Duration) bool {
		sleeps++
		cancel()
		return false
	})
	ks.run(ctx, func(context.Context, time.Duration) bool {
		t.Error("run slept with a done context")
		return false
	})

	if sleeps != 1 || srv.Requests() != 1 {
		t.Errorf("run slept %d times and fetched %d times, want 1 and 1", sleeps, srv.Requests())
	}
}

func TestCacheMaxAge(t *testing.T) {
	const def = time.Hour

	tests := []struct {
		name string
		give string
		want time.Duration
	}{
		{name: "Google's header", give: "public, max-age=19302, must-revalidate, no-transform", want: 19302 * time.Second},
		{name: "max-age only", give: "max-age=60", want: time.Minute},
		{name: "zero", give: "max-age=0", want: 0},
		{name: "upper case", give: "Public, MAX-AGE=60", want: time.Minute},
		{name: "quoted", give: `max-age="60"`, want: time.Minute},
		{name: "after s-maxage", give: "s-maxage=10, max-age=20", want: 20 * time.Second},
		{name: "spaces", give: "public ,  max-age=30 ", want: 30 * time.Second},
		{name: "absent", give: "", want: def},
		{name: "no-cache", give: "no-cache", want: def},
		{name: "negative", give: "max-age=-1", want: def},
		{name: "not a number", give: "max-age=soon", want: def},
		{name: "empty value", give: "max-age=", want: def},
		{name: "2^31 seconds", give: "max-age=2147483648", want: 2147483648 * time.Second},
		// RFC 9111 §1.2.2: a larger delta-seconds counts as 2^31, rather
		// than overflowing into a negative or tiny duration.
		{name: "beyond time.Duration", give: "max-age=9223372037", want: 2147483648 * time.Second},
		{name: "beyond int64", give: "max-age=99999999999999999999", want: 2147483648 * time.Second},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cacheMaxAge(tt.give, def); got != tt.want {
				t.Errorf("cacheMaxAge(%q) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	rsaKey := verifytest.RSAKey(t, "rsa")
	ecKey := verifytest.ECKey(t, "ec")
	edKey := verifytest.Ed25519Key(t, "ed")
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaKey.Public().(*rsa.PublicKey))}))
	privDER, err := x509.MarshalPKCS8PrivateKey(rsaKey.Private)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	doc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	jwks := func(keys ...jose.JSONWebKey) string { return doc(jose.JSONWebKeySet{Keys: keys}) }
	withUse := func(k jose.JSONWebKey, use string) jose.JSONWebKey { k.Use = use; return k }
	withAlg := func(k jose.JSONWebKey, alg string) jose.JSONWebKey { k.Algorithm = alg; return k }
	withKid := func(k jose.JSONWebKey, kid string) jose.JSONWebKey { k.KeyID = kid; return k }
	private := jose.JSONWebKey{Key: rsaKey.Private, KeyID: "private", Use: "sig"}
	oct := jose.JSONWebKey{Key: []byte(verifytest.Secret), KeyID: "oct", Algorithm: "HS256"}

	tests := []struct {
		name    string
		give    string
		want    map[string]string // kid → key type and alg
		wantErr bool
	}{
		{name: "x509 certificates", give: doc(map[string]string{"rsa": string(rsaKey.CertificatePEM(t)), "ec": string(ecKey.CertificatePEM(t))}), want: map[string]string{"rsa": "rsa", "ec": "ec"}},
		{name: "PEM public keys", give: doc(map[string]string{"rsa": string(rsaKey.PublicKeyPEM(t)), "ec": string(ecKey.PublicKeyPEM(t)), "ed": string(edKey.PublicKeyPEM(t))}), want: map[string]string{"rsa": "rsa", "ec": "ec", "ed": "ed25519"}},
		{name: "PKCS #1 RSA public key", give: doc(map[string]string{"rsa": pkcs1}), want: map[string]string{"rsa": "rsa"}},
		{name: "JWKS", give: jwks(rsaKey.JWK(), ecKey.JWK(), edKey.JWK()), want: map[string]string{"rsa": "rsa RS256", "ec": "ec ES256", "ed": "ed25519 EdDSA"}},
		{name: "JWKS without alg or use", give: jwks(withUse(withAlg(rsaKey.JWK(), ""), "")), want: map[string]string{"rsa": "rsa"}},
		{name: "JWKS skips encryption keys", give: jwks(rsaKey.JWK(), withUse(withKid(ecKey.JWK(), "enc"), "enc")), want: map[string]string{"rsa": "rsa RS256"}},
		{name: "JWKS skips keys without kid", give: jwks(rsaKey.JWK(), withKid(ecKey.JWK(), "")), want: map[string]string{"rsa": "rsa RS256"}},
		{name: "JWKS skips private keys", give: jwks(rsaKey.JWK(), private), want: map[string]string{"rsa": "rsa RS256"}},
		{name: "JWKS skips symmetric keys", give: jwks(rsaKey.JWK(), oct), want: map[string]string{"rsa": "rsa RS256"}},
		{name: "JWKS of skipped keys only", give: jwks(private, oct), wantErr: true},
		{name: "private key PEM", give: doc(map[string]string{"rsa": privPEM}), wantErr: true},
		{name: "one bad entry fails the document", give: doc(map[string]string{"rsa": string(rsaKey.CertificatePEM(t)), "bad": "not PEM"}), wantErr: true},
		{name: "empty object", give: "{}", wantErr: true},
		{name: "not JSON", give: "<html>", wantErr: true},
		{name: "array", give: "[]", wantErr: true},
		{name: "keys not an array", give: `{"keys":{}}`, wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseKeys([]byte(tt.give))
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("parseKeys() error = %v, want error %t", err, tt.wantErr)
			}
			got := make(map[string]string, len(keys))
			for kid, pk := range keys {
				got[kid] = describeKey(pk)
			}
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseKeys() = %v, want %v", got, tt.want)
			}
		})
	}
}

// describeKey names the type and declared algorithm of pk.
func describeKey(pk publicKey) string {
	var s string
	switch publicOf(pk.key).(type) {
	case *rsa.PublicKey:
		s = "rsa"
	case *ecdsa.PublicKey:
		s = "ec"
	case ed25519.PublicKey:
		s = "ed25519"
	default:
		s = "unknown"
	}
	if pk.alg != "" {
		s += " " + pk.alg
	}
	return s
}

package verify_test

import (
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

// publicKeyLegacy is the legacy issuer with public-key algorithms algs,
// keys from files and, if jwksURL is set, a JWKS.
func publicKeyLegacy(algs []string, files []string, jwksURL string) verify.LegacyConfig {
	return configtest.Fill(verify.LegacyConfig{
		Enabled:        true,
		Issuer:         testIssuer,
		Audience:       "platform",
		Algorithms:     algs,
		PublicKeyFiles: files,
		JWKS:           configtest.Fill(verify.KeySetConfig{URL: jwksURL}, verify.DefaultKeySetConfig()),
	}, verify.DefaultLegacyConfig())
}

func TestVerifyLegacyPublicKeys(t *testing.T) {
	id, _, other := firebaseKeys(t)
	rsaKey := id.WithID("rsa-1")
	otherRSA := other.WithID("rsa-1")
	ec1, ec2, otherEC := verifytest.ECKey(t, "ec-1"), verifytest.ECKey(t, "ec-2"), verifytest.ECKey(t, "ec-2")
	ed, otherEd := verifytest.Ed25519Key(t, "ed-1"), verifytest.Ed25519Key(t, "ed-1")

	dir := t.TempDir()
	writeFile := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsaPEM := rsaKey.PublicKeyPEM(t)
	rsaCertPEM := rsaKey.CertificatePEM(t)
	rsaFile := writeFile("rsa.pem", rsaPEM)
	rsaCertFile := writeFile("rsa.crt", rsaCertPEM)
	ecFile := writeFile("ec.pem", ec1.PublicKeyPEM(t))
	edFile := writeFile("ed.pem", ed.PublicKeyPEM(t))

	ecJWKS := verifytest.NewKeyServer(t)
	ecJWKS.ServeJWKS(t, ec1, ec2)
	rs384JWK := rsaKey.JWK()
	rs384JWK.Algorithm = "RS384"
	rs384JWKS := verifytest.NewKeyServer(t)
	rs384JWKS.ServeJWK(t, rs384JWK)
	noAlgJWK := rsaKey.JWK()
	noAlgJWK.Algorithm = ""
	noAlgJWKS := verifytest.NewKeyServer(t)
	noAlgJWKS.ServeJWK(t, noAlgJWK)

	withSecret := func(c verify.LegacyConfig) verify.LegacyConfig {
		c.Secrets = []secret.Secret{verifytest.Secret}
		return c
	}
	rs256File := publicKeyLegacy([]string{"RS256"}, []string{rsaFile}, "")
	hsAndRS := withSecret(publicKeyLegacy([]string{"HS256", "RS256"}, []string{rsaFile}, ""))
	hsAndRSCert := withSecret(publicKeyLegacy([]string{"HS256", "RS256"}, []string{rsaCertFile}, ""))
	es256JWKS := publicKeyLegacy([]string{"ES256"}, nil, ecJWKS.URL)
	claims := claimsWith()
	hmac := func(key []byte) string {
		return verifytest.HMAC(t, jose.HS256, key, claims, map[string]any{"kid": rsaKey.ID})
	}

	tests := []struct {
		name        string
		giveConfig  verify.LegacyConfig
		giveToken   string
		wantErr     error
		wantSubject string
	}{
		// RSA from files.
		{name: "RS256, PEM public key", giveConfig: rs256File, giveToken: rsaKey.Sign(t, claims, nil), wantSubject: "alice"},
		{name: "RS256, PEM public key, no kid", giveConfig: rs256File, giveToken: rsaKey.WithID("").Sign(t, claims, nil), wantSubject: "alice"},
		{name: "RS256, PEM certificate", giveConfig: publicKeyLegacy([]string{"RS256"}, []string{rsaCertFile}, ""), giveToken: rsaKey.Sign(t, claims, nil), wantSubject: "alice"},
		{name: "RS256, signed by another RSA key", giveConfig: rs256File, giveToken: otherRSA.Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "RS256, payload changed", giveConfig: rs256File, giveToken: withPayload(t, rsaKey.Sign(t, claims, nil), claimsWith("sub", "admin")), wantErr: verify.ErrInvalid},
		{name: "RS256, expired", giveConfig: rs256File, giveToken: rsaKey.Sign(t, claimsWith("exp", testNow.Add(-time.Hour).Unix()), nil), wantErr: verify.ErrExpired},
		{name: "RS256, audience wrong", giveConfig: rs256File, giveToken: rsaKey.Sign(t, claimsWith("aud", "billing"), nil), wantErr: verify.ErrInvalid},
		{name: "PS256", giveConfig: publicKeyLegacy([]string{"PS256"}, []string{rsaFile}, ""), giveToken: rsaKey.SignAlg(t, jose.PS256, claims, nil), wantSubject: "alice"},
		{name: "PS256 token, RS256 allowed", giveConfig: rs256File, giveToken: rsaKey.SignAlg(t, jose.PS256, claims, nil), wantErr: verify.ErrInvalid},
		{name: "RS256 token, PS256 allowed", giveConfig: publicKeyLegacy([]string{"PS256"}, []string{rsaFile}, ""), giveToken: rsaKey.Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "RS384 token, RS256 allowed", giveConfig: rs256File, giveToken: rsaKey.SignAlg(t, jose.RS384, claims, nil), wantErr: verify.ErrInvalid},

		// EC from a JWKS: the kid picks the key.
		{name: "ES256, JWKS, first key", giveConfig: es256JWKS, giveToken: ec1.Sign(t, claims, nil), wantSubject: "alice"},
		{name: "ES256, JWKS, second key", giveConfig: es256JWKS, giveToken: ec2.Sign(t, claims, nil), wantSubject: "alice"},
		{name: "ES256, JWKS, signed by the other key of the set", giveConfig: es256JWKS, giveToken: ec1.WithID(ec2.ID).Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "ES256, JWKS, signed by a key not in the set", giveConfig: es256JWKS, giveToken: otherEC.Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "ES256, JWKS, unknown kid", giveConfig: es256JWKS, giveToken: ec1.WithID("ec-3").Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "ES256, JWKS, no kid", giveConfig: es256JWKS, giveToken: ec1.WithID("").Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "ES256, PEM public key", giveConfig: publicKeyLegacy([]string{"ES256"}, []string{ecFile}, ""), giveToken: ec1.WithID("").Sign(t, claims, nil), wantSubject: "alice"},

		// Ed25519 from a file.
		{name: "EdDSA, PEM public key", giveConfig: publicKeyLegacy([]string{"EdDSA"}, []string{edFile}, ""), giveToken: ed.Sign(t, claims, nil), wantSubject: "alice"},
		{name: "EdDSA, signed by another key", giveConfig: publicKeyLegacy([]string{"EdDSA"}, []string{edFile}, ""), giveToken: otherEd.Sign(t, claims, nil), wantErr: verify.ErrInvalid},

		// A key is used only under the algorithms of its type.
		{name: "ES256 token, RSA key, ES256 not allowed", giveConfig: rs256File, giveToken: ec1.Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "ES256 token, RSA key, ES256 allowed", giveConfig: publicKeyLegacy([]string{"RS256", "ES256"}, []string{rsaFile}, ""), giveToken: ec1.Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "RS256 token, EC key, RS256 allowed", giveConfig: publicKeyLegacy([]string{"RS256", "ES256"}, []string{ecFile}, ""), giveToken: rsaKey.Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "EdDSA token, RSA key, EdDSA allowed", giveConfig: publicKeyLegacy([]string{"RS256", "EdDSA"}, []string{rsaFile}, ""), giveToken: ed.Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "RS256 token, RSA key in an ES256 JWKS", giveConfig: publicKeyLegacy([]string{"RS256", "ES256"}, nil, ecJWKS.URL), giveToken: rsaKey.WithID(ec1.ID).Sign(t, claims, nil), wantErr: verify.ErrInvalid},

		// The public key is never an HMAC secret.
		{name: "HS256 with the public key PEM as secret, RS256 only", giveConfig: rs256File, giveToken: hmac(rsaPEM), wantErr: verify.ErrInvalid},
		{name: "HS256 with the public key PEM as secret, HS256 and RS256", giveConfig: hsAndRS, giveToken: hmac(rsaPEM), wantErr: verify.ErrInvalid},
		{name: "HS256 with the certificate PEM as secret, HS256 and RS256", giveConfig: hsAndRSCert, giveToken: hmac(rsaCertPEM), wantErr: verify.ErrInvalid},
		{name: "HS256 with the DER public key as secret, HS256 and RS256", giveConfig: hsAndRS, giveToken: hmac(pemBody(t, rsaPEM)), wantErr: verify.ErrInvalid},
		{name: "HS256 with its own secret, HS256 and RS256", giveConfig: hsAndRS, giveToken: hs256(t, claims), wantSubject: "alice"},
		{name: "RS256 next to HS256", giveConfig: hsAndRS, giveToken: rsaKey.Sign(t, claims, nil), wantSubject: "alice"},

		// A JWKS key declaring an algorithm is used under that one only.
		{name: "JWKS key for RS384, RS256 token", giveConfig: publicKeyLegacy([]string{"RS256"}, nil, rs384JWKS.URL), giveToken: rsaKey.Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "JWKS key for RS384, RS256 token, both allowed", giveConfig: publicKeyLegacy([]string{"RS256", "RS384"}, nil, rs384JWKS.URL), giveToken: rsaKey.Sign(t, claims, nil), wantErr: verify.ErrInvalid},
		{name: "JWKS key for RS384, RS384 token", giveConfig: publicKeyLegacy([]string{"RS256", "RS384"}, nil, rs384JWKS.URL), giveToken: rsaKey.SignAlg(t, jose.RS384, claims, nil), wantSubject: "alice"},
		{name: "JWKS key without alg, RS256 token", giveConfig: publicKeyLegacy([]string{"RS256"}, nil, noAlgJWKS.URL), giveToken: rsaKey.Sign(t, claims, nil), wantSubject: "alice"},

		// Headers.
		{name: "alg none", giveConfig: rs256File, giveToken: unsigned(t, map[string]any{"alg": "none"}, claims, ""), wantErr: verify.ErrInvalid},
		{name: "embedded jwk of the signing key", giveConfig: rs256File, giveToken: otherRSA.Sign(t, claims, map[string]any{"jwk": otherRSA.JWK()}), wantErr: verify.ErrInvalid},
		{name: "x5c of the signing key", giveConfig: rs256File, giveToken: otherRSA.Sign(t, claims, map[string]any{"x5c": []string{base64.StdEncoding.EncodeToString(otherRSA.Certificate(t).Raw)}}), wantErr: verify.ErrInvalid},
		{name: "jku", giveConfig: es256JWKS, giveToken: ec1.Sign(t, claims, map[string]any{"jku": "https://attacker.example/jwks"}), wantErr: verify.ErrInvalid},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := verify.New(configtest.Fill(verify.Config{Legacy: tt.giveConfig}, verify.DefaultConfig()), zaptest.NewLogger(t), nil, verify.WithClock(fixedClock))
			if err != nil {
				t.Fatalf("New(%v) error = %v", tt.giveConfig, err)
			}
			got, err := v.Verify(t.Context(), tt.giveToken)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if got.Subject != tt.wantSubject {
				t.Errorf("Verify().Subject = %q, want %q", got.Subject, tt.wantSubject)
			}
		})
	}
}

// fixedClock reads testNow.
func fixedClock() time.Time { return testNow }

// pemBody returns the bytes of the first PEM block of b.
func pemBody(tb testing.TB, b []byte) []byte {
	tb.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		tb.Fatal("no PEM block")
	}
	return block.Bytes
}

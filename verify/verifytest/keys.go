package verifytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Key is an asymmetric signing key and the key id (kid) its tokens and key
// documents name it by.
type Key struct {
	// ID is the kid. Sign writes it into the header unless it is empty.
	ID string
	// Alg is the algorithm Sign uses.
	Alg jose.SignatureAlgorithm
	// Private is an *rsa.PrivateKey, *ecdsa.PrivateKey or
	// ed25519.PrivateKey.
	Private crypto.Signer
}

// RSAKey generates an RSA-2048 key that signs RS256 under kid id.
func RSAKey(tb testing.TB, id string) *Key {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("generate RSA key: %v", err)
	}
	return &Key{ID: id, Alg: jose.RS256, Private: k}
}

// ECKey generates a P-256 key that signs ES256 under kid id.
func ECKey(tb testing.TB, id string) *Key {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate EC key: %v", err)
	}
	return &Key{ID: id, Alg: jose.ES256, Private: k}
}

// Ed25519Key generates an Ed25519 key that signs EdDSA under kid id.
func Ed25519Key(tb testing.TB, id string) *Key {
	tb.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatalf("generate Ed25519 key: %v", err)
	}
	return &Key{ID: id, Alg: jose.EdDSA, Private: k}
}

// ParseKey reads a PEM private key (PKCS #8, PKCS #1 or SEC 1), for tests
// that need the same key in every process, as fuzz workers do.
func ParseKey(tb testing.TB, id string, alg jose.SignatureAlgorithm, pemBytes []byte) *Key {
	tb.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		tb.Fatalf("parse key %q: no PEM block", id)
	}
	var k any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		tb.Fatalf("parse key %q: %v", id, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		tb.Fatalf("parse key %q: %T is not a signer", id, k)
	}
	return &Key{ID: id, Alg: alg, Private: s}
}

// WithID returns the same key material under another kid ("" for none).
func (k *Key) WithID(id string) *Key {
	c := *k
	c.ID = id
	return &c
}

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.Private.Public() }

// Sign signs claims with the key under k.Alg, naming k.ID as the kid.
// Fields of hdr are added to the protected header after the kid, so hdr can
// replace it.
func (k *Key) Sign(tb testing.TB, claims map[string]any, hdr map[string]any) string {
	tb.Helper()
	return k.SignAlg(tb, k.Alg, claims, hdr)
}

// SignAlg is Sign with another algorithm of the key's family (PS256 with an
// RSA key, say).
func (k *Key) SignAlg(tb testing.TB, alg jose.SignatureAlgorithm, claims map[string]any, hdr map[string]any) string {
	tb.Helper()
	h := make(map[string]any, len(hdr)+1)
	if k.ID != "" {
		h["kid"] = k.ID
	}
	for name, v := range hdr {
		h[name] = v
	}
	return Sign(tb, alg, k.Private, claims, h)
}

// Sign signs claims with key under alg, which go-jose must accept for the
// key's type ([]byte for HMAC). Fields of hdr are added to the protected
// header.
func Sign(tb testing.TB, alg jose.SignatureAlgorithm, key any, claims map[string]any, hdr map[string]any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for name, v := range hdr {
		opts = opts.WithHeader(jose.HeaderKey(name), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatalf("new %s signer: %v", alg, err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatalf("marshal claims: %v", err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return tok
}

// PublicKeyPEM returns the public key as a PEM "PUBLIC KEY" (PKIX) block.
func (k *Key) PublicKeyPEM(tb testing.TB) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		tb.Fatalf("marshal public key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Certificate returns a self-signed certificate for the key, valid for a
// year either side of 2025-06-01 (verifiers read the key from it; nobody
// checks its validity period).
func (k *Key) Certificate(tb testing.TB) *x509.Certificate {
	tb.Helper()
	mid := time.Date(2025, time.June, 1, 0, 0, 0, 0, time.UTC)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "authgate test key " + k.ID},
		NotBefore:    mid.AddDate(-1, 0, 0),
		NotAfter:     mid.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k.Private)
	if err != nil {
		tb.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse certificate: %v", err)
	}
	return cert
}

// CertificatePEM returns Certificate as a PEM "CERTIFICATE" block, the form
// of Google's x509 key documents.
func (k *Key) CertificatePEM(tb testing.TB) []byte {
	tb.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Certificate(tb).Raw})
}

// JWK returns the public key as a JSON Web Key with kid, use "sig" and
// alg set from the key.
func (k *Key) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"}
}

package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Identities of the tokens the suite mints.
const (
	projectID    = "demo-bench"
	legacyIssuer = "https://auth.bench.test"
	// legacySecret is the HS256 key of the legacy issuer (32 bytes or more).
	legacySecret = "authgate-bench-hs256-secret-0123456789"
	keyID        = "bench-key-1"
	// The identity assertion of fa-assert.
	assertionIssuer   = "https://authgate.bench.test"
	assertionAudience = "bench-services"
)

// writeAssertionKey writes a new P-256 key (PKCS#8 PEM) for the
// identity assertion to path.
func writeAssertionKey(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate assertion key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("assertion key: %w", err)
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// signer mints Firebase ID tokens (RS256) with a key that the suite's key
// server publishes, and legacy HS256 tokens.
type signer struct {
	key  *rsa.PrivateKey
	cert []byte // PEM
	now  time.Time
}

func newSigner() (*signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "authgate bench " + keyID},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	return &signer{key: key, cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), now: now}, nil
}

var (
	rs256Header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"` + keyID + `","typ":"JWT"}`))
	hs256Header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
)

// firebaseClaims are the claims of a Firebase ID token of uid, issued age
// before the signer's start; Google's tokens carry the same set.
func (s *signer) firebaseClaims(uid string, age time.Duration) map[string]any {
	iat := s.now.Add(-age).Unix()
	email := uid + "@bench.test"
	return map[string]any{
		"name":           "Bench User " + uid,
		"iss":            "https://securetoken.google.com/" + projectID,
		"aud":            projectID,
		"auth_time":      iat - 60,
		"user_id":        uid,
		"sub":            uid,
		"iat":            iat,
		"exp":            iat + 3600,
		"email":          email,
		"email_verified": true,
		"firebase": map[string]any{
			"identities":       map[string]any{"email": []string{email}},
			"sign_in_provider": "password",
		},
	}
}

// firebase mints a Firebase ID token (RS256).
func (s *signer) firebase(uid string, age time.Duration) (string, error) {
	payload, err := json.Marshal(s.firebaseClaims(uid, age))
	if err != nil {
		return "", err
	}
	signing := rs256Header + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// legacy mints a legacy platform token (HS256) for user id sub.
func (s *signer) legacy(sub string) string {
	iat := s.now.Unix()
	payload, _ := json.Marshal(map[string]any{
		"sub":            sub,
		"iss":            legacyIssuer,
		"email":          sub + "@bench.test",
		"email_verified": true,
		"username":       "u-" + sub[:8],
		"user_type":      "user",
		"iat":            iat,
		"exp":            iat + 3600,
	})
	signing := hs256Header + "." + base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(legacySecret))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// tokenSpec names the user and age of the i-th token of a set.
type tokenSpec func(i int) (uid string, age time.Duration)

// mintFirebase mints n Firebase tokens in parallel on every core: RSA
// signing takes about a millisecond each, so sets are minted before the
// timed runs and runs are sized by their token count.
func (s *signer) mintFirebase(n int, spec tokenSpec) ([]string, error) {
	out := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				uid, age := spec(i)
				tok, err := s.firebase(uid, age)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				out[i] = tok
			}
		}()
	}
	wg.Wait()
	return out, firstErr
}

// keyServer publishes the signer's certificate in the format of Google's
// securetoken x509 endpoint (kid → PEM certificate), as authgate fetches it
// at start.
type keyServer struct {
	url      string
	srv      *http.Server
	requests atomic.Int64
}

func startKeyServer(s *signer) (*keyServer, error) {
	doc, err := json.Marshal(map[string]string{keyID: string(s.cert)})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("key server: %w", err)
	}
	ks := &keyServer{url: "http://" + ln.Addr().String() + "/x509"}
	ks.srv = &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ks.requests.Add(1)
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			w.Header().Set("Cache-Control", "public, max-age=19302, must-revalidate, no-transform")
			_, _ = w.Write(doc)
		}),
	}
	go func() { _ = ks.srv.Serve(ln) }()
	return ks, nil
}

func (ks *keyServer) close() { _ = ks.srv.Close() }

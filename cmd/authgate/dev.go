package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authgate/authgate/configs"
	"github.com/authgate/authgate/internal/secret"
)

// runDev starts authgate with the embedded configs/dev.yaml: no external
// service, a built-in echo upstream and a legacy issuer whose secret is made
// up at start. It prints a token and a curl line. --database-url turns
// federation on (migrations applied at start); --firebase-emulator accepts
// the unsigned tokens of a Firebase Auth Emulator, the only mode in which
// authgate accepts unsigned tokens.
func runDev(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "public listen address")
	adminAddr := fs.String("admin-addr", "127.0.0.1:9090", "admin listen address")
	dbURL := fs.String("database-url", "", "PostgreSQL URL: turn federation on (migrations applied at start)")
	emulator := fs.String("firebase-emulator", "", "HOST:PORT of a Firebase Auth Emulator whose unsigned tokens to accept")
	project := fs.String("firebase-project", "demo-authgate", "Firebase project id of the emulator's tokens")
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	cfg := defaultConfig()
	if err := decodeYAML(configs.Dev, &cfg); err != nil {
		return fmt.Errorf("embedded dev config: %w", err)
	}
	cfg.Server.Public.Addr, cfg.Server.Admin.Addr = *addr, *adminAddr
	var key [32]byte
	_, _ = rand.Read(key[:])
	cfg.Verify.Legacy.Secrets = []secret.Secret{secret.Secret(hex.EncodeToString(key[:]))}
	if *dbURL != "" {
		cfg.Federation.Enabled, cfg.Federation.DatabaseURL, cfg.Federation.MigrateOnStart = true, secret.Secret(*dbURL), true
	}
	if *emulator != "" {
		if _, _, err := net.SplitHostPort(*emulator); err != nil {
			fmt.Fprintf(stderr, "authgate dev: --firebase-emulator %q: want HOST:PORT\n", *emulator)
			return exitError{2}
		}
		fb := &cfg.Verify.Firebase
		fb.Enabled, fb.ProjectID, fb.Emulator = true, *project, true
		// The Admin SDK finds the emulator through this variable; serve
		// accepts it because emulator mode is explicit here.
		environ = append(environ, emulatorEnv+"="+*emulator)
	}
	// Assertions on, signed with a key of this process only: fine for one
	// process, which is why serve has no such fallback.
	keyFile, err := devAssertionKey()
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(keyFile))
	a := &cfg.Proxy.Assertion
	a.Enabled, a.Issuer, a.Audience, a.KeyFiles = true, "authgate-dev", "authgate-dev", []string{keyFile}
	if err := applyEnv(&cfg, environ); err != nil {
		printProblems(stderr, "environment", err)
		return exitError{2}
	}
	if err := cfg.Validate(); err != nil {
		printProblems(stderr, "dev config", err)
		return exitError{2}
	}
	tok, err := devToken(cfg.Verify.Legacy.Secrets[0].Value(), cfg.Verify.Legacy.Issuer, cfg.Verify.Legacy.Audience)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, environ, stderr, func(public, admin net.Addr) {
		if *emulator != "" {
			fmt.Fprintf(stdout, `
!!! FIREBASE AUTH EMULATOR MODE: unsigned tokens for project %q are accepted. !!!
!!! Development only. Get one from the emulator at http://%s and send it as a bearer token. !!!
`, *project, *emulator)
		}
		if *dbURL != "" {
			fmt.Fprintln(stdout, "\nfederation on: X-User-Id is the platform user id from PostgreSQL (legacy users need a row; Firebase users get one).")
		}
		fmt.Fprintf(stdout, `
authgate dev is running (development only: the signing secret is random and printed below).

  upstream:  built-in echo (shows the headers it received)
  public:    http://%[1]s    admin: http://%[2]s/readyz  http://%[2]s/metrics

A token for user "dev-user-1", valid for 12 hours:

  TOKEN=%[3]s

Try:

  curl -s -H "Authorization: Bearer $TOKEN" http://%[1]s/api/hello     # 200, X-User-* headers upstream
  curl -s -H "X-User-Id: admin" http://%[1]s/api/hello                  # 401: no token, spoofed header never passes
  curl -s http://%[1]s/public/ping                                       # 200 without a token

X-User-Assertion is signed with an ephemeral ES256 key, new at every start
(iss and aud "authgate-dev"); its public keys:

  curl -s http://%[1]s%[4]s

`, public, admin, tok, cfg.Proxy.Assertion.JWKSPath)
	}, "")
}

// devAssertionKey writes a new P-256 key to a private temporary directory
// and returns the file's path.
func devAssertionKey() (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("assertion key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", fmt.Errorf("assertion key: %w", err)
	}
	dir, err := os.MkdirTemp("", "authgate-dev-")
	if err != nil {
		return "", fmt.Errorf("assertion key: %w", err)
	}
	path := filepath.Join(dir, "assertion.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("assertion key: %w", err)
	}
	return path, nil
}

func devToken(secret, iss, aud string) (string, error) {
	now := time.Now()
	claims := map[string]any{
		"sub": "dev-user-1", "email": "dev@example.test", "email_verified": true,
		"username": "dev", "user_type": "user",
		"iat": now.Unix(), "exp": now.Add(12 * time.Hour).Unix(),
	}
	if iss != "" {
		claims["iss"] = iss
	}
	if aud != "" {
		claims["aud"] = aud
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	obj, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

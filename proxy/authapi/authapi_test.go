package authapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"

	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/ratelimit"
	"github.com/authgate/authgate/verify"
)

// Fakes of the backends, for the tests that need no Firebase or
// PostgreSQL: validation, limits, routing, the error shape.

type fakeVerifier struct {
	mu      sync.Mutex
	ids     map[string]verify.Identity
	reloads []string
}

func (f *fakeVerifier) Verify(_ context.Context, tok string) (verify.Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.ids[tok]; ok {
		return id, nil
	}
	return verify.Identity{}, verify.ErrInvalid
}

func (f *fakeVerifier) ReloadUser(_ context.Context, uid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads = append(f.reloads, uid)
	return nil
}

type fakeUsers struct{}

const fakeUserID = "6f1c1b1e-0000-4000-8000-000000000001"

func (fakeUsers) EnsureUser(_ context.Context, id verify.Identity) (federation.User, error) {
	return federation.User{ID: fakeUserID, FirebaseUID: id.FirebaseUID, Email: id.Email, IsActive: true, FederationStatus: federation.StatusActive}, nil
}

func (fakeUsers) CreateUser(_ context.Context, nu federation.NewUser) (federation.User, error) {
	return federation.User{ID: fakeUserID, FirebaseUID: nu.FirebaseUID, Email: nu.Email, IsActive: true, FederationStatus: federation.StatusActive}, nil
}

func (fakeUsers) UpdateLastLogin(_ context.Context, id string, at time.Time) (federation.User, error) {
	return federation.User{ID: id, LastLogin: at}, nil
}

func (fakeUsers) FindLegacyAccount(context.Context, federation.LegacyColumns, string) (federation.LegacyAccount, error) {
	return federation.LegacyAccount{}, federation.ErrNotFound
}

func (fakeUsers) CompleteMigration(context.Context, federation.LegacyColumns, string, string, bool) (federation.User, error) {
	return federation.User{}, federation.ErrNotFound
}

type fakeAccounts struct {
	mu      sync.Mutex
	revoked []string
}

func (f *fakeAccounts) CreateUser(context.Context, NewAccount) (string, error) {
	return "fake-uid", nil
}
func (f *fakeAccounts) DeleteUser(context.Context, string) error { return nil }
func (f *fakeAccounts) RevokeRefreshTokens(_ context.Context, uid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, uid)
	return nil
}

// fakeSessions refuses every sign-in and refresh.
type fakeSessions struct{}

func (fakeSessions) SignIn(context.Context, string, string) (Session, error) {
	return Session{}, ErrInvalidCredentials
}

func (fakeSessions) Refresh(context.Context, string) (Session, error) {
	return Session{}, ErrInvalidRefreshToken
}

type fakes struct {
	h        *Handler
	verifier *fakeVerifier
	accounts *fakeAccounts
}

// newFakes builds the API on fakes with the default configuration
// (rate limits included) and legacy passwords on; edit may change it.
func newFakes(t *testing.T, edit ...func(*Config)) *fakes {
	t.Helper()
	cfg := DefaultConfig()
	cfg.WebAPIKey = "key"
	cfg.LegacyPasswords.Enabled, cfg.LegacyPasswords.Cost = true, testCost
	for _, e := range edit {
		e(&cfg)
	}
	f := &fakes{verifier: &fakeVerifier{ids: map[string]verify.Identity{}}, accounts: &fakeAccounts{}}
	h, err := New(cfg, Backends{Verifier: f.verifier, Users: fakeUsers{}, Accounts: f.accounts, Sessions: fakeSessions{}}, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.h = h
	return f
}

func TestRouting(t *testing.T) {
	f := newFakes(t)
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantCode   string
		wantAllow  string
	}{
		{name: "unknown endpoint", method: "POST", path: "/v1/auth/nope", wantStatus: 404, wantCode: CodeNotFound},
		{name: "prefix itself", method: "GET", path: "/v1/auth/", wantStatus: 404, wantCode: CodeNotFound},
		{name: "sub-path", method: "POST", path: "/v1/auth/login/x", wantStatus: 404, wantCode: CodeNotFound},
		{name: "GET login", method: "GET", path: "/v1/auth/login", wantStatus: 405, wantCode: CodeMethodNotAllowed, wantAllow: "POST"},
		{name: "POST me", method: "POST", path: "/v1/auth/me", wantStatus: 405, wantCode: CodeMethodNotAllowed, wantAllow: "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, f.h, tt.method, tt.path, nil, "")
			if a.status != tt.wantStatus || a.code(t) != tt.wantCode || a.header.Get("Allow") != tt.wantAllow {
				t.Errorf("%s %s = %d %s (Allow %q), want %d %s (Allow %q)", tt.method, tt.path, a.status, a.body, a.header.Get("Allow"), tt.wantStatus, tt.wantCode, tt.wantAllow)
			}
			if a.header.Get("Content-Type") != "application/json" || a.header.Get("Cache-Control") != "no-store" {
				t.Errorf("headers = %v, want JSON, no-store", a.header)
			}
			if msg := a.str(t, "error", "message"); msg == "" {
				t.Errorf("error without a message: %s", a.body)
			}
		})
	}
}

func TestRequestValidation(t *testing.T) {
	f := newFakes(t, func(c *Config) { c.RateLimit = RateLimits{MaxKeys: ratelimit.DefaultMaxKeys} })
	tests := []struct {
		name       string
		path       string
		give       any
		wantStatus int
		wantCode   string
	}{
		{name: "too large", path: "/v1/auth/login", give: `{"email": "a@example.test", "password": "` + strings.Repeat("x", maxBody) + `"}`, wantStatus: 413, wantCode: CodeRequestTooLarge},
		{name: "not JSON", path: "/v1/auth/login", give: "email=a@example.test", wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "two objects", path: "/v1/auth/login", give: `{"email": "a@example.test", "password": "p"} {}`, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "no email", path: "/v1/auth/login", give: creds{Password: "p"}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "display name in email", path: "/v1/auth/login", give: creds{Email: "Eve <eve@example.test>", Password: "p"}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "no password", path: "/v1/auth/login", give: creds{Email: "a@example.test"}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "weak password", path: "/v1/auth/register", give: creds{Email: "a@example.test", Password: "1234567"}, wantStatus: 400, wantCode: CodeWeakPassword},
		{name: "bad username", path: "/v1/auth/register", give: creds{Email: "a@example.test", Password: goodPassword, Username: "x"}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "bad display name", path: "/v1/auth/register", give: creds{Email: "a@example.test", Password: goodPassword, DisplayName: "a\nb"}, wantStatus: 400, wantCode: CodeInvalidRequest},
		{name: "no refresh token", path: "/v1/auth/refresh", give: map[string]string{}, wantStatus: 400, wantCode: CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, f.h, "POST", tt.path, tt.give, "")
			if a.status != tt.wantStatus || a.code(t) != tt.wantCode {
				t.Errorf("POST %s = %d %s, want %d %s", tt.path, a.status, a.body, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func TestRateLimits(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	f := newFakes(t, func(c *Config) {
		c.RateLimit = RateLimits{PerIP: ratelimit.Config{Rate: 1, Burst: 3}, PerEmail: ratelimit.Config{Rate: 0.1, Burst: 2}, MaxKeys: ratelimit.DefaultMaxKeys}
	})
	f.h.now = func() time.Time { return now }
	clientIP := netip.MustParseAddr("198.51.100.1")
	f.h.clientIP = func(*http.Request) netip.Addr { return clientIP }
	login := func(email string) answer {
		return call(t, f.h, "POST", "/v1/auth/login", creds{Email: email, Password: "wrong"}, "")
	}

	// Per email: the third try for one email is refused, from any address.
	for i := range 2 {
		if a := login("victim@example.test"); a.status != 401 {
			t.Fatalf("login %d = %d %s, want 401", i, a.status, a.body)
		}
	}
	clientIP = netip.MustParseAddr("198.51.100.2")
	a := login("VICTIM@example.test")
	if a.status != 429 || a.code(t) != CodeRateLimited || a.header.Get("Retry-After") == "" {
		t.Errorf("third login for one email = %d %s (Retry-After %q), want 429 %s with Retry-After", a.status, a.body, a.header.Get("Retry-After"), CodeRateLimited)
	}
	// Per address: the fourth request from one address is refused, whatever
	// the endpoint and email.
	clientIP = netip.MustParseAddr("198.51.100.3")
	for i, email := range []string{"a@example.test", "b@example.test", "c@example.test"} {
		if a := login(email); a.status != 401 {
			t.Fatalf("login %d = %d %s, want 401", i, a.status, a.body)
		}
	}
	if a := call(t, f.h, "GET", "/v1/auth/me", nil, "x"); a.status != 429 || a.code(t) != CodeRateLimited {
		t.Errorf("fourth request from one address = %d %s, want 429", a.status, a.body)
	}
}

func TestLogoutRevokesAndShares(t *testing.T) {
	f := newFakes(t)
	past := time.Now().Add(-time.Hour)
	f.verifier.ids["tok"] = verify.Identity{Provider: verify.ProviderFirebase, Subject: "uid-1", FirebaseUID: "uid-1", IssuedAt: past}
	if a := call(t, f.h, "POST", "/v1/auth/logout", nil, "tok"); a.status != 204 {
		t.Fatalf("logout = %d %s, want 204", a.status, a.body)
	}
	if len(f.accounts.revoked) != 1 || f.accounts.revoked[0] != "uid-1" || len(f.verifier.reloads) != 1 || f.verifier.reloads[0] != "uid-1" {
		t.Errorf("revoked %v, reloaded %v; want uid-1 once each", f.accounts.revoked, f.verifier.reloads)
	}
	for _, auth := range []string{"", "Basic dXNlcjpwdw==", "Bearer ", "Bearer unknown"} {
		req := httptest.NewRequest("POST", "/v1/auth/logout", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), CodeInvalidToken) {
			t.Errorf("logout with Authorization %q = %d %s, want 401 %s", auth, rec.Code, rec.Body, CodeInvalidToken)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("file-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := func() Config {
		c := DefaultConfig()
		c.Enabled, c.WebAPIKey = true, "key"
		return c
	}
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "disabled is always valid", edit: func(c *Config) { *c = configtest.Fill(Config{}, DefaultConfig()) }},
		{name: "key file", edit: func(c *Config) { c.WebAPIKey, c.WebAPIKeyFile = "", keyFile }},
		{name: "legacy on", edit: func(c *Config) { c.LegacyPasswords.Enabled = true }},
		{name: "no key", edit: func(c *Config) { c.WebAPIKey = "" }, want: []string{"web_api_key: required"}},
		{name: "key twice", edit: func(c *Config) { c.WebAPIKeyFile = keyFile }, want: []string{"web_api_key: set web_api_key or web_api_key_file"}},
		{name: "missing key file", edit: func(c *Config) { c.WebAPIKey, c.WebAPIKeyFile = "", keyFile+".missing" }, want: []string{"web_api_key_file:"}},
		{name: "every problem at once", edit: func(c *Config) {
			c.Prefix = "/v1/auth/"
			c.IdentityToolkitURL = "ftp://x"
			c.SecureTokenURL = "https://x/?key=1"
			c.Timeout = time.Hour
			c.Password = PasswordPolicy{MinLength: 4, MaxLength: 5000}
			c.RateLimit.PerIP.Rate = -1
			c.RateLimit.PerEmail = ratelimit.Config{Burst: 3}
			c.RateLimit.MaxKeys = -1
			c.LegacyPasswords = LegacyPasswords{Enabled: true, Column: "Password-Hash", EmailVerifiedColumn: "x y", Format: "md5", Cost: 40}
		}, want: []string{
			"prefix:", "identity_toolkit_url:", "secure_token_url:", "timeout:", "password.min_length:", "password.max_length:",
			"rate_limit.per_ip.rate:", "rate_limit.per_email.burst:", "rate_limit.max_keys:",
			"legacy_passwords.column:", "legacy_passwords.email_verified_column:", "legacy_passwords.format:", "legacy_passwords.cost:",
		}},
		{name: "max below min", edit: func(c *Config) { c.Password = PasswordPolicy{MinLength: 20, MaxLength: 10} }, want: []string{"password.max_length: 10 is less than min_length 20"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(&c)
			err := c.Validate()
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if len(tt.want) > 0 && err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigRedactsKey(t *testing.T) {
	c := DefaultConfig()
	c.WebAPIKey = "AIzaSecretLookingKey"
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v %#v", c, c)} {
		if strings.Contains(s, "AIzaSecretLookingKey") || !strings.Contains(s, "[redacted]") {
			t.Errorf("String() = %s, want the key redacted", s)
		}
	}
}

func TestPasswordPolicy(t *testing.T) {
	strict := PasswordPolicy{MinLength: 8, MaxLength: 12, RequireLowercase: true, RequireUppercase: true, RequireDigit: true, RequireSymbol: true}
	tests := []struct {
		name string
		give PasswordPolicy
		pw   string
		want string // "" or a substring of the complaint
	}{
		{name: "long enough", give: PasswordPolicy{MinLength: 8, MaxLength: 128}, pw: "abcdefgh"},
		{name: "characters, not bytes", give: PasswordPolicy{MinLength: 8, MaxLength: 8}, pw: "éééééééé"},
		{name: "too short", give: PasswordPolicy{MinLength: 8, MaxLength: 128}, pw: "abcdefg", want: "8 to 128 characters"},
		{name: "too long", give: PasswordPolicy{MinLength: 6, MaxLength: 8}, pw: "abcdefghi", want: "6 to 8 characters"},
		{name: "strict ok", give: strict, pw: "Abcdef1!"},
		{name: "strict missing all", give: strict, pw: "        ", want: "a lower-case letter, an upper-case letter, a digit"},
		{name: "strict no symbol", give: strict, pw: "Abcdefg1", want: "neither letter nor digit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.give.check(tt.pw)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("check(%q) = %q, want %q", tt.pw, got, tt.want)
			}
			if got != "" && strings.Contains(got, tt.pw) {
				t.Errorf("check(%q) = %q quotes the password", tt.pw, got)
			}
		})
	}
}

func TestNormalEmail(t *testing.T) {
	tests := []struct {
		give string
		want string
		ok   bool
	}{
		{give: "alice@example.test", want: "alice@example.test", ok: true},
		{give: "  Alice.B+tag@Example.Test ", want: "Alice.B+tag@Example.Test", ok: true},
		{give: "alice@localhost"},
		{give: "alice"},
		{give: "@example.test"},
		{give: "alice@@example.test"},
		{give: "Alice <alice@example.test>"},
		{give: "alice@example.test (comment)"},
		{give: `"a b"@example.test`},
		{give: "alice@.example.test"},
		{give: "alice@example..test"},
		{give: strings.Repeat("a", 65) + "@example.test"},
		{give: "a@" + strings.Repeat("b", 250) + ".test"},
	}
	for _, tt := range tests {
		got, ok := normalEmail(tt.give)
		if got != tt.want || ok != tt.ok {
			t.Errorf("normalEmail(%q) = %q, %v, want %q, %v", tt.give, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLegacyHashMatches(t *testing.T) {
	l, err := newLegacyHashes(LegacyPasswords{Cost: testCost})
	if err != nil {
		t.Fatal(err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), testCost)
	if err != nil {
		t.Fatal(err)
	}
	// $2y$ (PHP) and $2b$ (Node, OpenBSD) hash ASCII passwords as $2a$ does.
	hash2y := "$2y$" + string(h[4:])
	tests := []struct {
		name     string
		hash, pw string
		want     bool
	}{
		{name: "2y match", hash: hash2y, pw: "secret", want: true},
		{name: "2a match", hash: string(h), pw: "secret", want: true},
		{name: "2b match", hash: "$2b$" + string(h[4:]), pw: "secret", want: true},
		{name: "mismatch", hash: hash2y, pw: "Secret"},
		{name: "no hash", hash: "", pw: "secret"},
		{name: "not bcrypt", hash: "5ebe2294ecd0e0f08eab7690d2a6ee69", pw: "secret"},
		{name: "the dummy's password is unknowable", hash: string(l.dummy), pw: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := l.matches(tt.hash, tt.pw); got != tt.want {
				t.Errorf("matches(%q) = %v, want %v", tt.hash, got, tt.want)
			}
		})
	}
}

func TestNewRequiresBackends(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WebAPIKey = "key"
	if _, err := New(cfg, Backends{}, nil, nil); err == nil {
		t.Error("New without backends = nil error, want one")
	}
	cfg.WebAPIKey = ""
	if _, err := New(cfg, Backends{}, nil, nil); err == nil || !errors.Is(err, err) || !strings.Contains(err.Error(), "web_api_key") {
		t.Errorf("New without a key = %v, want the key named", err)
	}
}

// /me always answers every identity field the README lists, empty when the
// token does not say, so that a client need not tell absent from empty.
func TestMeIdentityFields(t *testing.T) {
	f := newFakes(t)
	f.verifier.ids["legacy-token"] = verify.Identity{Provider: verify.ProviderLegacy, Subject: fakeUserID}
	f.verifier.ids["firebase-token"] = verify.Identity{Provider: verify.ProviderFirebase, Subject: "fb-1", FirebaseUID: "fb-1", Email: "a@example.test", EmailVerified: true, Name: "Ada", Role: "admin"}
	tests := []struct {
		name      string
		giveToken string
		want      map[string]any
	}{
		{name: "legacy token without claims", giveToken: "legacy-token", want: map[string]any{
			"provider": "legacy", "subject": fakeUserID, "firebaseUid": "", "email": "", "emailVerified": false, "name": "", "role": "",
		}},
		{name: "firebase token", giveToken: "firebase-token", want: map[string]any{
			"provider": "firebase", "subject": "fb-1", "firebaseUid": "fb-1", "email": "a@example.test", "emailVerified": true, "name": "Ada", "role": "admin",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, f.h, "GET", "/v1/auth/me", nil, tt.giveToken)
			got, _ := a.json(t)["identity"].(map[string]any)
			if a.status != 200 || !maps.Equal(got, tt.want) {
				t.Errorf("me = %d, identity %v, want 200 and %v", a.status, got, tt.want)
			}
		})
	}
}

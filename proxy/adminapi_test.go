package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"
	"github.com/authgate/authgate/proxy/authapi"
)

const testAdminSecret = "admin-secret-0123456789abcdef-0123456789abcdef"

// fakeLinker answers LinkUser with user and err, and records the calls.
type fakeLinker struct {
	user federation.User
	err  error

	mu    sync.Mutex
	calls []string // "id uid"
}

func (l *fakeLinker) LinkUser(_ context.Context, userID, firebaseUID string) (federation.User, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, userID+" "+firebaseUID)
	return l.user, l.err
}

// newTestAdmin is the admin handler with the admin API mounted.
func newTestAdmin(t *testing.T, cfg AdminConfig, l Linker, log *zap.Logger) *Admin {
	t.Helper()
	api, err := NewAdminAPI(cfg, AdminBackends{Users: &fakeAdminUsers{}, Linker: l}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("NewAdminAPI: %v", err)
	}
	return NewAdmin(cfg, prometheus.NewRegistry(), nil, WithAdminAPI(api))
}

// linkRequest is POST /admin/users/{id}/link with body and, unless empty,
// the Authorization header auth.
func linkRequest(id, body, auth string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/admin/users/"+id+"/link", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

const linkedID = "0a0a0a0a-0000-4000-8000-000000000001"

func TestAdminAPILink(t *testing.T) {
	linked := federation.User{ID: linkedID, FirebaseUID: "fb-1", Email: "user@example.test", FederationStatus: federation.StatusActive, TokenBalance: 7}
	bearer := "Bearer " + testAdminSecret
	okBody := `{"firebase_uid": "fb-1"}`
	tests := []struct {
		name      string
		giveReq   func() *http.Request
		giveErr   error
		wantCode  int
		wantError string // the error code in the body; "" for the user
		wantCall  string // what the linker was asked; "" for no call
	}{
		{name: "linked", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, bearer) },
			wantCode: 200, wantCall: linkedID + " fb-1"},
		{name: "scheme in any case", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, "bearer "+testAdminSecret) },
			wantCode: 200, wantCall: linkedID + " fb-1"},
		{name: "no secret", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, "") },
			wantCode: 401, wantError: "unauthorized"},
		{name: "wrong secret", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, "Bearer "+testAdminSecret+"x") },
			wantCode: 401, wantError: "unauthorized"},
		{name: "secret prefix", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, "Bearer "+testAdminSecret[:10]) },
			wantCode: 401, wantError: "unauthorized"},
		{name: "basic scheme", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, "Basic "+testAdminSecret) },
			wantCode: 401, wantError: "unauthorized"},
		{name: "two authorization headers", giveReq: func() *http.Request {
			r := linkRequest(linkedID, okBody, bearer)
			r.Header.Add("Authorization", bearer)
			return r
		}, wantCode: 401, wantError: "unauthorized"},
		{name: "unauthenticated bad body is still 401", giveReq: func() *http.Request { return linkRequest(linkedID, "{", "") },
			wantCode: 401, wantError: "unauthorized"},
		{name: "unauthenticated other path is 401", giveReq: func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/admin/nothing", nil)
		}, wantCode: 401, wantError: "unauthorized"},
		{name: "bad JSON", giveReq: func() *http.Request { return linkRequest(linkedID, `{"firebase_uid":`, bearer) },
			wantCode: 400, wantError: "invalid_request"},
		{name: "unknown field", giveReq: func() *http.Request { return linkRequest(linkedID, `{"firebaseUid": "fb-1"}`, bearer) },
			wantCode: 400, wantError: "invalid_request"},
		{name: "two values", giveReq: func() *http.Request { return linkRequest(linkedID, okBody+okBody, bearer) },
			wantCode: 400, wantError: "invalid_request"},
		{name: "no uid", giveReq: func() *http.Request { return linkRequest(linkedID, `{}`, bearer) },
			wantCode: 400, wantError: "invalid_request"},
		{name: "uid too long", giveReq: func() *http.Request {
			return linkRequest(linkedID, fmt.Sprintf(`{"firebase_uid": %q}`, strings.Repeat("u", 129)), bearer)
		}, wantCode: 400, wantError: "invalid_request"},
		{name: "uid with a control character", giveReq: func() *http.Request { return linkRequest(linkedID, `{"firebase_uid": "a\nb"}`, bearer) },
			wantCode: 400, wantError: "invalid_request"},
		{name: "oversized body", giveReq: func() *http.Request {
			return linkRequest(linkedID, fmt.Sprintf(`{"firebase_uid": %q}`, strings.Repeat("u", 5000)), bearer)
		}, wantCode: 413, wantError: "request_too_large"},
		{name: "oversized by trailing space", giveReq: func() *http.Request { return linkRequest(linkedID, okBody+strings.Repeat(" ", 5000), bearer) },
			wantCode: 413, wantError: "request_too_large"},
		{name: "GET", giveReq: func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/admin/users/"+linkedID+"/link", nil)
			r.Header.Set("Authorization", bearer)
			return r
		}, wantCode: 405},
		{name: "POST on the user", giveReq: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/admin/users/"+linkedID, strings.NewReader(okBody))
			r.Header.Set("Authorization", bearer)
			return r
		}, wantCode: 405},
		{name: "unknown path", giveReq: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/admin/users/"+linkedID+"/unlink", strings.NewReader(okBody))
			r.Header.Set("Authorization", bearer)
			return r
		}, wantCode: 404},
		{name: "unknown user", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, bearer) },
			giveErr: fmt.Errorf("link user: %w", federation.ErrNotFound), wantCode: 404, wantError: "user_not_found", wantCall: linkedID + " fb-1"},
		{name: "conflict", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, bearer) },
			giveErr: fmt.Errorf("link user: %w: users_firebase_uid_key", federation.ErrConflict), wantCode: 409, wantError: "conflict", wantCall: linkedID + " fb-1"},
		{name: "unknown firebase user", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, bearer) },
			giveErr: fmt.Errorf("link user: %w", federation.ErrUnknownFirebaseUser), wantCode: 422, wantError: "unknown_firebase_user", wantCall: linkedID + " fb-1"},
		{name: "store unavailable", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, bearer) },
			giveErr: fmt.Errorf("link user: %w", federation.ErrUnavailable), wantCode: 503, wantError: "unavailable", wantCall: linkedID + " fb-1"},
		{name: "firebase unavailable", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, bearer) },
			giveErr: fmt.Errorf("link user: %w", federation.ErrFirebaseUnavailable), wantCode: 503, wantError: "unavailable", wantCall: linkedID + " fb-1"},
		{name: "anything else", giveReq: func() *http.Request { return linkRequest(linkedID, okBody, bearer) },
			giveErr: errors.New("boom"), wantCode: 500, wantError: "internal", wantCall: linkedID + " fb-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &fakeLinker{user: linked, err: tt.giveErr}
			a := newTestAdmin(t, AdminConfig{APISecret: secret.Secret(testAdminSecret)}, l, zaptest.NewLogger(t))
			w := httptest.NewRecorder()
			a.ServeHTTP(w, tt.giveReq())
			if w.Code != tt.wantCode {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.wantCode, w.Body)
			}
			if got := strings.Join(l.calls, ","); got != tt.wantCall {
				t.Errorf("linker calls = %q, want %q", got, tt.wantCall)
			}
			if w.Code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("WWW-Authenticate = %q, want Bearer", w.Header().Get("WWW-Authenticate"))
			}
			if tt.wantCode == 200 {
				var got map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
					t.Fatal(err)
				}
				want := map[string]any{"id": linkedID, "firebaseUid": "fb-1", "email": "user@example.test", "federationStatus": "active",
					"isActive": false, "tokenBalance": 7}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("body = %v, want %v", got, want)
				}
				return
			}
			if tt.wantError == "" {
				return
			}
			var got authapi.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.Error.Code != tt.wantError {
				t.Errorf("body = %s (%v), want error code %s", w.Body, err, tt.wantError)
			}
			if strings.Contains(w.Body.String(), "boom") || strings.Contains(w.Body.String(), "users_firebase_uid_key") {
				t.Errorf("body %s shows the cause", w.Body)
			}
		})
	}
}

// Without a secret the admin API is off: 404 whatever the request, even
// with a bearer token.
func TestAdminAPIOffWithoutSecret(t *testing.T) {
	for _, withAPI := range []bool{false, true} {
		l := &fakeLinker{}
		var a *Admin
		if withAPI {
			a = newTestAdmin(t, AdminConfig{}, l, zaptest.NewLogger(t))
		} else {
			a = NewAdmin(AdminConfig{}, prometheus.NewRegistry(), nil)
		}
		for _, auth := range []string{"", "Bearer anything", "Bearer "} {
			w := httptest.NewRecorder()
			a.ServeHTTP(w, linkRequest(linkedID, `{"firebase_uid": "fb-1"}`, auth))
			if w.Code != http.StatusNotFound || len(l.calls) != 0 {
				t.Errorf("mounted %t, Authorization %q: status %d, calls %v; want 404, none", withAPI, auth, w.Code, l.calls)
			}
		}
	}
	api, err := NewAdminAPI(AdminConfig{}, AdminBackends{}, nil, nil)
	if err != nil || api.Enabled() {
		t.Errorf("NewAdminAPI without a secret = %v, enabled %t; want off", err, api.Enabled())
	}
	if _, err := NewAdminAPI(AdminConfig{APISecret: secret.Secret(testAdminSecret)}, AdminBackends{Linker: &fakeLinker{}}, nil, nil); err == nil {
		t.Error("NewAdminAPI with a secret and no user table succeeded")
	}
}

// The secret never reaches the logs, whether it is right, wrong or close.
func TestAdminAPINeverLogsSecret(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	a := newTestAdmin(t, AdminConfig{APISecret: secret.Secret(testAdminSecret)}, &fakeLinker{
		user: federation.User{ID: linkedID, FirebaseUID: "fb-1", FederationStatus: federation.StatusActive},
	}, zap.New(core))
	reqs := []*http.Request{
		linkRequest(linkedID, `{"firebase_uid": "fb-1"}`, "Bearer "+testAdminSecret),
		linkRequest(linkedID, `{"firebase_uid": "fb-1"}`, "Bearer "+testAdminSecret+"x"),
		linkRequest(linkedID, `{"firebase_uid": "fb-1"}`, "Bearer "+testAdminSecret[:20]),
		linkRequest(linkedID, `{`, "Bearer "+testAdminSecret),
	}
	errLinker := newTestAdmin(t, AdminConfig{APISecret: secret.Secret(testAdminSecret)}, &fakeLinker{err: errors.New("boom")}, zap.New(core))
	for _, r := range reqs {
		a.ServeHTTP(httptest.NewRecorder(), r)
	}
	errLinker.ServeHTTP(httptest.NewRecorder(), linkRequest(linkedID, `{"firebase_uid": "fb-1"}`, "Bearer "+testAdminSecret))
	if logs.Len() < 4 {
		t.Fatalf("%d log entries, want the link, the refusals and the failure logged", logs.Len())
	}
	for _, e := range logs.All() {
		line := fmt.Sprintf("%s %v", e.Message, e.ContextMap())
		if strings.Contains(line, testAdminSecret[:20]) || strings.Contains(line, "Bearer") {
			t.Errorf("log entry %q shows the secret", line)
		}
	}
}

func TestAdminConfigSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", testAdminSecret+"\n")
	short := write("short", "s3cr3t-short\n")
	empty := write("empty", "\n")
	big := write("big", strings.Repeat("x", secret.MaxFileBytes+1))
	tests := []struct {
		name       string
		give       AdminConfig
		wantSecret string
		wantKeys   []string
	}{
		{name: "none", give: configtest.Fill(AdminConfig{}, DefaultAdminConfig())},
		{name: "inline", give: configtest.Fill(AdminConfig{APISecret: secret.Secret(testAdminSecret)}, DefaultAdminConfig()), wantSecret: testAdminSecret},
		{name: "file, newline trimmed", give: configtest.Fill(AdminConfig{APISecretFile: good}, DefaultAdminConfig()), wantSecret: testAdminSecret},
		{name: "both", give: configtest.Fill(AdminConfig{APISecret: secret.Secret(testAdminSecret), APISecretFile: good}, DefaultAdminConfig()), wantKeys: []string{"api_secret"}},
		{name: "inline too short", give: configtest.Fill(AdminConfig{APISecret: "s3cr3t-short"}, DefaultAdminConfig()), wantKeys: []string{"api_secret"}},
		{name: "file too short", give: configtest.Fill(AdminConfig{APISecretFile: short}, DefaultAdminConfig()), wantKeys: []string{"api_secret_file"}},
		{name: "file empty", give: configtest.Fill(AdminConfig{APISecretFile: empty}, DefaultAdminConfig()), wantKeys: []string{"api_secret_file"}},
		{name: "file too big", give: configtest.Fill(AdminConfig{APISecretFile: big}, DefaultAdminConfig()), wantKeys: []string{"api_secret_file"}},
		{name: "file missing", give: configtest.Fill(AdminConfig{APISecretFile: filepath.Join(dir, "nope")}, DefaultAdminConfig()), wantKeys: []string{"api_secret_file"}},
		{name: "negative check timeout", give: AdminConfig{CheckTimeout: -1}, wantKeys: []string{"check_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var keys []string
			for _, err := range configerr.List(tt.give.Validate()) {
				key, _, _ := strings.Cut(err.Error(), ":")
				keys = append(keys, key)
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("error %q shows the secret", err)
				}
			}
			if fmt.Sprint(keys) != fmt.Sprint(tt.wantKeys) {
				t.Errorf("Validate() keys = %v, want %v", keys, tt.wantKeys)
			}
			if tt.wantKeys != nil {
				return
			}
			if got, err := tt.give.apiSecret(); got != tt.wantSecret || err != nil {
				t.Errorf("apiSecret() = %q, %v, want %q", got, err, tt.wantSecret)
			}
		})
	}
	c := AdminConfig{APISecret: secret.Secret(testAdminSecret), APISecretFile: "/run/secret"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v", c, c, c), fmt.Sprintf("%v", &c)} {
		if strings.Contains(s, testAdminSecret[:20]) || !strings.Contains(s, "/run/secret") {
			t.Errorf("formatted config %q shows the secret or hides the file", s)
		}
	}
}

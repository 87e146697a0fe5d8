package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/proxy/authapi"
)

// fakeAdminUsers answers every call with user (previous for the balance)
// and err, and records the calls; Idempotent keeps answers by user and
// key as the store does, without PostgreSQL (the store and the wired
// binary have their own tests against it).
type fakeAdminUsers struct {
	user     federation.User
	previous int64
	err      error

	mu    sync.Mutex
	calls []string
	kept  map[string]keptAnswer
}

type keptAnswer struct {
	fp  string
	ans federation.Answer
}

func (f *fakeAdminUsers) record(call string) (federation.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.user, f.err
}

func (f *fakeAdminUsers) FindByID(_ context.Context, id string) (federation.User, error) {
	return f.record("FindByID " + id)
}

func (f *fakeAdminUsers) FindByEmail(_ context.Context, email string) (federation.User, error) {
	return f.record("FindByEmail " + email)
}

func (f *fakeAdminUsers) FindByFirebaseUID(_ context.Context, uid string) (federation.User, error) {
	return f.record("FindByFirebaseUID " + uid)
}

func (f *fakeAdminUsers) FindByUsername(_ context.Context, name string) (federation.User, error) {
	return f.record("FindByUsername " + name)
}

func (f *fakeAdminUsers) Update(_ context.Context, id string, ch federation.Changes) (federation.User, error) {
	s := "Update " + id
	if ch.Username != nil {
		s += " username=" + *ch.Username
	}
	if ch.UserType != nil {
		s += " userType=" + *ch.UserType
	}
	if ch.IsActive != nil {
		s += fmt.Sprintf(" isActive=%t", *ch.IsActive)
	}
	return f.record(s)
}

func (f *fakeAdminUsers) SoftDelete(_ context.Context, id string) (federation.User, error) {
	return f.record("SoftDelete " + id)
}

func (f *fakeAdminUsers) HardDelete(_ context.Context, id string) error {
	_, err := f.record("HardDelete " + id)
	return err
}

func (f *fakeAdminUsers) Restore(_ context.Context, id string) (federation.User, error) {
	return f.record("Restore " + id)
}

func (f *fakeAdminUsers) ChangeTokenBalance(_ context.Context, id string, op federation.BalanceOp, n int64) (federation.User, int64, error) {
	u, err := f.record(fmt.Sprintf("ChangeTokenBalance %s %s %d", id, op, n))
	return u, f.previous, err
}

func (f *fakeAdminUsers) ListFailedFederations(_ context.Context, limit int) ([]federation.User, error) {
	u, err := f.record(fmt.Sprintf("ListFailedFederations %d", limit))
	return []federation.User{u}, err
}

func (f *fakeAdminUsers) Idempotent(_ context.Context, userID, key string, fp []byte, fn func(tx UserRepo) (federation.Answer, error)) (federation.Answer, bool, error) {
	f.mu.Lock()
	k, ok := f.kept[userID+" "+key]
	f.mu.Unlock()
	switch {
	case ok && k.fp != string(fp):
		return federation.Answer{}, false, federation.ErrIdempotencyKeyReused
	case ok:
		return k.ans, true, nil
	}
	ans, err := fn(f)
	if err != nil {
		return ans, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kept == nil {
		f.kept = make(map[string]keptAnswer)
	}
	f.kept[userID+" "+key] = keptAnswer{string(fp), ans}
	return ans, false, nil
}

// fakeRetrier answers RetryFederation with user, result and err.
type fakeRetrier struct {
	user   federation.User
	result string
	err    error
}

func (r fakeRetrier) RetryFederation(context.Context, string) (federation.User, string, error) {
	return r.user, r.result, r.err
}

func adminRequest(method, target, body string, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+testAdminSecret)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

const userPath = "/admin/users/" + linkedID

func TestAdminUsersAPI(t *testing.T) {
	row := federation.User{ID: linkedID, Email: "row@example.test", Username: "rowname", UserType: "user", IsActive: true,
		TokenBalance: 7, FederationStatus: federation.StatusActive}
	tests := []struct {
		name      string
		giveReq   *http.Request
		giveErr   error
		wantCode  int
		wantError string // the error code in the body; "" for success
		wantCall  string // what the user table was asked; "" for nothing
		wantBody  string // a part of a successful body
	}{
		{name: "get", giveReq: adminRequest("GET", userPath, ""), wantCode: 200, wantCall: "FindByID " + linkedID, wantBody: `"tokenBalance":7`},
		{name: "get unknown", giveReq: adminRequest("GET", userPath, ""), giveErr: federation.ErrNotFound,
			wantCode: 404, wantError: "user_not_found", wantCall: "FindByID " + linkedID},
		{name: "get, store down", giveReq: adminRequest("GET", userPath, ""), giveErr: fmt.Errorf("find: %w: dial tcp 10.0.0.1", federation.ErrUnavailable),
			wantCode: 503, wantError: "unavailable", wantCall: "FindByID " + linkedID},
		{name: "put is not allowed", giveReq: adminRequest("PUT", userPath, "{}"), wantCode: 405, wantError: "method_not_allowed"},
		{name: "unknown endpoint", giveReq: adminRequest("GET", userPath+"/nothing", ""), wantCode: 404, wantError: "not_found"},
		{name: "find by email", giveReq: adminRequest("GET", "/admin/users?email=Row@Example.test", ""), wantCode: 200, wantCall: "FindByEmail Row@Example.test"},
		{name: "find by uid", giveReq: adminRequest("GET", "/admin/users?firebase_uid=fb-1", ""), wantCode: 200, wantCall: "FindByFirebaseUID fb-1"},
		{name: "find by username", giveReq: adminRequest("GET", "/admin/users?username=rowname", ""), wantCode: 200, wantCall: "FindByUsername rowname"},
		{name: "find by two", giveReq: adminRequest("GET", "/admin/users?username=a&email=b", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "find by none", giveReq: adminRequest("GET", "/admin/users", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "find by one twice", giveReq: adminRequest("GET", "/admin/users?email=a&email=b", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "find by other", giveReq: adminRequest("GET", "/admin/users?id=x", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "find by empty", giveReq: adminRequest("GET", "/admin/users?email=", ""), wantCode: 400, wantError: "invalid_request"},

		{name: "patch", giveReq: adminRequest("PATCH", userPath, `{"username": "new.name", "userType": "admin", "isActive": false}`),
			wantCode: 200, wantCall: "Update " + linkedID + " username=new.name userType=admin isActive=false"},
		{name: "patch nothing", giveReq: adminRequest("PATCH", userPath, `{}`), wantCode: 400, wantError: "invalid_request"},
		{name: "patch bad username", giveReq: adminRequest("PATCH", userPath, `{"username": "a b"}`), wantCode: 400, wantError: "invalid_request"},
		{name: "patch short username", giveReq: adminRequest("PATCH", userPath, `{"username": "ab"}`), wantCode: 400, wantError: "invalid_request"},
		{name: "patch bad user type", giveReq: adminRequest("PATCH", userPath, `{"userType": ""}`), wantCode: 400, wantError: "invalid_request"},
		{name: "patch unknown field", giveReq: adminRequest("PATCH", userPath, `{"email": "x@example.test"}`), wantCode: 400, wantError: "invalid_request"},
		{name: "patch is_active as string", giveReq: adminRequest("PATCH", userPath, `{"isActive": "no"}`), wantCode: 400, wantError: "invalid_request"},
		{name: "patch username taken", giveReq: adminRequest("PATCH", userPath, `{"username": "taken"}`),
			giveErr:  fmt.Errorf("update: %w: %w", federation.ErrConflict, federation.ErrUsernameTaken),
			wantCode: 409, wantError: "username_taken", wantCall: "Update " + linkedID + " username=taken"},
		{name: "patch oversized", giveReq: adminRequest("PATCH", userPath, `{"username": "`+strings.Repeat("a", 5000)+`"}`), wantCode: 413, wantError: "request_too_large"},

		{name: "soft delete", giveReq: adminRequest("DELETE", userPath, ""), wantCode: 200, wantCall: "SoftDelete " + linkedID},
		{name: "soft delete, hard=false", giveReq: adminRequest("DELETE", userPath+"?hard=false", ""), wantCode: 200, wantCall: "SoftDelete " + linkedID},
		{name: "hard delete", giveReq: adminRequest("DELETE", userPath+"?hard=true", ""), wantCode: 204, wantCall: "HardDelete " + linkedID},
		{name: "hard delete unknown", giveReq: adminRequest("DELETE", userPath+"?hard=true", ""), giveErr: federation.ErrNotFound,
			wantCode: 404, wantError: "user_not_found", wantCall: "HardDelete " + linkedID},
		{name: "delete, hard=yes", giveReq: adminRequest("DELETE", userPath+"?hard=yes", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "delete, other parameter", giveReq: adminRequest("DELETE", userPath+"?force=1", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "restore", giveReq: adminRequest("POST", userPath+"/restore", ""), wantCode: 200, wantCall: "Restore " + linkedID},
		{name: "restore, email taken", giveReq: adminRequest("POST", userPath+"/restore", ""),
			giveErr:  fmt.Errorf("restore: %w: %w", federation.ErrConflict, federation.ErrEmailTaken),
			wantCode: 409, wantError: "email_exists", wantCall: "Restore " + linkedID},
		{name: "restore with GET", giveReq: adminRequest("GET", userPath+"/restore", ""), wantCode: 405, wantError: "method_not_allowed"},

		{name: "decrement", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "decrement", "amount": 3}`),
			wantCode: 200, wantCall: "ChangeTokenBalance " + linkedID + " decrement 3", wantBody: `{"id":"` + linkedID + `","tokenBalance":7,"previousBalance":10}`},
		{name: "increment by the most", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "increment", "amount": 9223372036854775807}`),
			wantCode: 200, wantCall: "ChangeTokenBalance " + linkedID + " increment 9223372036854775807"},
		{name: "set zero", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 0}`),
			wantCode: 200, wantCall: "ChangeTokenBalance " + linkedID + " set 0"},
		{name: "insufficient", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "decrement", "amount": 30}`),
			giveErr: federation.ErrInsufficientBalance, wantCode: 409, wantError: "insufficient_balance", wantCall: "ChangeTokenBalance " + linkedID + " decrement 30"},
		{name: "overflow", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "increment", "amount": 1}`),
			giveErr: federation.ErrBalanceOverflow, wantCode: 409, wantError: "balance_overflow", wantCall: "ChangeTokenBalance " + linkedID + " increment 1"},
		{name: "balance of unknown", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "increment", "amount": 1}`),
			giveErr: federation.ErrNotFound, wantCode: 404, wantError: "user_not_found", wantCall: "ChangeTokenBalance " + linkedID + " increment 1"},
		{name: "increment zero", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "increment", "amount": 0}`), wantCode: 400, wantError: "invalid_request"},
		{name: "negative", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": -1}`), wantCode: 400, wantError: "invalid_request"},
		{name: "beyond int64", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 9223372036854775808}`), wantCode: 400, wantError: "invalid_request"},
		{name: "fraction", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 1.5}`), wantCode: 400, wantError: "invalid_request"},
		{name: "exponent", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 1e3}`), wantCode: 400, wantError: "invalid_request"},
		{name: "amount as string", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": "5"}`), wantCode: 400, wantError: "invalid_request"},
		{name: "no amount", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set"}`), wantCode: 400, wantError: "invalid_request"},
		{name: "unknown op", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "double", "amount": 1}`), wantCode: 400, wantError: "invalid_request"},
		{name: "two objects", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 1}{}`), wantCode: 400, wantError: "invalid_request"},
		{name: "store down", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 1}`),
			giveErr: federation.ErrUnavailable, wantCode: 503, wantError: "unavailable", wantCall: "ChangeTokenBalance " + linkedID + " set 1"},
		{name: "anything else", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 1}`),
			giveErr: errors.New("boom: pq secret detail"), wantCode: 500, wantError: "internal", wantCall: "ChangeTokenBalance " + linkedID + " set 1"},
		{name: "idempotency key too long", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 1}`,
			"Idempotency-Key", strings.Repeat("k", 256)), wantCode: 400, wantError: "invalid_request"},
		{name: "idempotency key with a control character", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 1}`,
			"Idempotency-Key", "a\tb"), wantCode: 400, wantError: "invalid_request"},
		{name: "two idempotency keys", giveReq: adminRequest("POST", userPath+"/token-balance", `{"op": "set", "amount": 1}`,
			"Idempotency-Key", "a", "Idempotency-Key", "b"), wantCode: 400, wantError: "invalid_request"},

		{name: "failed list", giveReq: adminRequest("GET", "/admin/federation/failed", ""), wantCode: 200, wantCall: "ListFailedFederations 100", wantBody: `"syncAttempts":2`},
		{name: "failed list, limit", giveReq: adminRequest("GET", "/admin/federation/failed?limit=1000", ""), wantCode: 200, wantCall: "ListFailedFederations 1000"},
		{name: "failed list, limit too big", giveReq: adminRequest("GET", "/admin/federation/failed?limit=1001", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "failed list, limit zero", giveReq: adminRequest("GET", "/admin/federation/failed?limit=0", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "failed list, other parameter", giveReq: adminRequest("GET", "/admin/federation/failed?offset=3", ""), wantCode: 400, wantError: "invalid_request"},
		// Without Firebase there is no linker and no retrier.
		{name: "link without firebase", giveReq: linkRequest(linkedID, `{"firebase_uid": "fb-1"}`, "Bearer "+testAdminSecret), wantCode: 404, wantError: "not_found"},
		{name: "retry without firebase", giveReq: adminRequest("POST", userPath+"/federation/retry", ""), wantCode: 404, wantError: "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := row
			row.SyncAttempts = 2
			users := &fakeAdminUsers{user: row, previous: 10, err: tt.giveErr}
			api, err := NewAdminAPI(AdminConfig{APISecret: testAdminSecret}, AdminBackends{Users: users}, zaptest.NewLogger(t), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			NewAdmin(AdminConfig{}, prometheus.NewRegistry(), nil, WithAdminAPI(api)).ServeHTTP(w, tt.giveReq)
			if w.Code != tt.wantCode {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.wantCode, w.Body)
			}
			if got := strings.Join(users.calls, ","); got != tt.wantCall {
				t.Errorf("calls = %q, want %q", got, tt.wantCall)
			}
			if w.Header().Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			if tt.wantError == "" {
				if !strings.Contains(w.Body.String(), tt.wantBody) {
					t.Errorf("body = %s, want it to contain %s", w.Body, tt.wantBody)
				}
				return
			}
			var got authapi.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.Error.Code != tt.wantError || got.Error.Message == "" {
				t.Errorf("body = %s (%v), want error code %s", w.Body, err, tt.wantError)
			}
			if strings.Contains(w.Body.String(), "boom") || strings.Contains(w.Body.String(), "10.0.0.1") {
				t.Errorf("body %s shows the cause", w.Body)
			}
		})
	}
}

// The user JSON is the auth API's.
func TestAdminUserShape(t *testing.T) {
	users := &fakeAdminUsers{user: federation.User{ID: linkedID, FirebaseUID: "fb-1", Email: "row@example.test", Username: "rowname",
		UserType: "user", IsActive: true, TokenBalance: 7, FederationStatus: federation.StatusActive}}
	api, err := NewAdminAPI(AdminConfig{APISecret: testAdminSecret}, AdminBackends{Users: users}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	api.ServeHTTP(w, adminRequest("GET", userPath, ""))
	want, _ := json.Marshal(authapi.UserOf(users.user))
	if got := strings.TrimSpace(w.Body.String()); got != string(want) {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestAdminIdempotencyKey(t *testing.T) {
	users := &fakeAdminUsers{user: federation.User{ID: linkedID, TokenBalance: 4}, previous: 5}
	api, err := NewAdminAPI(AdminConfig{APISecret: testAdminSecret}, AdminBackends{Users: users}, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name         string
		giveBody     string
		giveKey      string
		wantCode     int
		wantReplayed bool
		wantCalls    int
	}{
		{name: "first", giveBody: `{"op": "decrement", "amount": 1}`, giveKey: "k1", wantCode: 200, wantCalls: 1},
		{name: "retry", giveBody: `{"op": "decrement", "amount": 1}`, giveKey: "k1", wantCode: 200, wantReplayed: true, wantCalls: 1},
		{name: "retry spelt otherwise", giveBody: `{"amount":1,"op":"decrement"}`, giveKey: "k1", wantCode: 200, wantReplayed: true, wantCalls: 1},
		{name: "other body", giveBody: `{"op": "decrement", "amount": 2}`, giveKey: "k1", wantCode: 422, wantCalls: 1},
		{name: "other key", giveBody: `{"op": "decrement", "amount": 1}`, giveKey: "k2", wantCode: 200, wantCalls: 2},
		{name: "no key", giveBody: `{"op": "decrement", "amount": 1}`, wantCode: 200, wantCalls: 3},
	}
	var first string
	for _, st := range steps {
		var hdr []string
		if st.giveKey != "" {
			hdr = []string{"Idempotency-Key", st.giveKey}
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, adminRequest("POST", userPath+"/token-balance", st.giveBody, hdr...))
		if w.Code != st.wantCode || (w.Header().Get("Idempotent-Replayed") == "true") != st.wantReplayed || len(users.calls) != st.wantCalls {
			t.Errorf("%s: status %d, replayed %q, %d calls; want %d, %t, %d calls; body %s", st.name, w.Code,
				w.Header().Get("Idempotent-Replayed"), len(users.calls), st.wantCode, st.wantReplayed, st.wantCalls, w.Body)
		}
		if st.name == "first" {
			first = w.Body.String()
		}
		if st.wantReplayed && w.Body.String() != first {
			t.Errorf("%s: body %s, want the first answer %s", st.name, w.Body, first)
		}
	}
}

// Every write logs one audit line with its facts, and counts; nothing
// logged shows an email or the secret.
func TestAdminAuditAndMetrics(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	users := &fakeAdminUsers{user: federation.User{ID: linkedID, Email: "secret-person@example.test", FederationStatus: federation.StatusFailed}}
	api, err := NewAdminAPI(AdminConfig{APISecret: testAdminSecret}, AdminBackends{
		Users: users, Linker: &fakeLinker{user: users.user}, Retrier: fakeRetrier{user: users.user, result: "linked"},
	}, zap.New(core), reg)
	if err != nil {
		t.Fatal(err)
	}
	// Every combination starts at 0.
	if n := testutil.CollectAndCount(reg, "admin_requests_total"); n != 7*len(adminResults) {
		t.Errorf("%d admin_requests_total series, want %d", n, 7*len(adminResults))
	}
	reqs := []*http.Request{
		adminRequest("POST", userPath+"/token-balance", `{"op": "increment", "amount": 5}`, "Idempotency-Key", "charge-1", "X-Request-Id", "req-1"),
		adminRequest("POST", userPath+"/token-balance", `{"op": "increment", "amount": 5}`, "Idempotency-Key", "charge-1"),
		adminRequest("PATCH", userPath, `{"isActive": false}`),
		adminRequest("DELETE", userPath, ""),
		adminRequest("POST", userPath+"/restore", ""),
		adminRequest("POST", userPath+"/token-balance", `{"op": "nope", "amount": 5}`),
		linkRequest(linkedID, `{"firebase_uid": "fb-1"}`, "Bearer "+testAdminSecret),
		adminRequest("POST", userPath+"/federation/retry", ""),
		// A client may put anything in its key; the log shows a digest.
		adminRequest("POST", userPath+"/token-balance", `{"op": "increment", "amount": 1}`, "Idempotency-Key", "refund-secret-person@example.test"),
		adminRequest("GET", userPath, ""), // a read: not audited
	}
	for _, r := range reqs {
		api.ServeHTTP(httptest.NewRecorder(), r)
	}
	audit := logs.FilterMessage("admin api write").All()
	if len(audit) != len(reqs)-1 {
		t.Fatalf("%d audit lines, want %d", len(audit), len(reqs)-1)
	}
	first := audit[0].ContextMap()
	for k, want := range map[string]any{"action": "token_balance", "user_id": linkedID, "result": "ok", "request_id": "req-1",
		"idempotency_key_sha256": "ec6806a2847447ad", "op": "increment", "amount": int64(5)} {
		if first[k] != want {
			t.Errorf("audit line %v: %s = %v, want %v", first, k, first[k], want)
		}
	}
	if got := audit[1].ContextMap()["result"]; got != "replayed" {
		t.Errorf("retry's result = %v, want replayed", got)
	}
	for _, e := range logs.All() {
		line := fmt.Sprintf("%s %v", e.Message, e.ContextMap())
		if strings.Contains(line, "secret-person") || strings.Contains(line, testAdminSecret[:20]) {
			t.Errorf("log line %q shows an email or the secret", line)
		}
	}
	for _, c := range []struct {
		action, result string
		want           float64
	}{
		{"token_balance", "ok", 2}, {"token_balance", "replayed", 1}, {"token_balance", "invalid", 1},
		{"update_user", "ok", 1}, {"delete_user", "ok", 1}, {"restore_user", "ok", 1},
		{"link_user", "ok", 1}, {"retry_federation", "ok", 1}, {"hard_delete_user", "ok", 0},
	} {
		if got := testutil.ToFloat64(api.m.requests.WithLabelValues(c.action, c.result)); got != c.want {
			t.Errorf("admin_requests_total{%s,%s} = %v, want %v", c.action, c.result, got, c.want)
		}
	}
}

func TestAdminRetryFederation(t *testing.T) {
	u := federation.User{ID: linkedID, FirebaseUID: "fb-1", FederationStatus: federation.StatusActive}
	tests := []struct {
		name      string
		give      fakeRetrier
		wantCode  int
		wantBody  string
		wantError string
	}{
		{name: "linked", give: fakeRetrier{user: u, result: "linked"}, wantCode: 200, wantBody: `"result":"linked"`},
		{name: "not failed", give: fakeRetrier{err: federation.ErrNotFailed}, wantCode: 409, wantError: "federation_not_failed"},
		{name: "firebase down", give: fakeRetrier{err: federation.ErrFirebaseUnavailable}, wantCode: 503, wantError: "unavailable"},
		{name: "unknown", give: fakeRetrier{err: federation.ErrNotFound}, wantCode: 404, wantError: "user_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api, err := NewAdminAPI(AdminConfig{APISecret: testAdminSecret}, AdminBackends{Users: &fakeAdminUsers{}, Retrier: tt.give}, zaptest.NewLogger(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			api.ServeHTTP(w, adminRequest("POST", userPath+"/federation/retry", ""))
			if w.Code != tt.wantCode || !strings.Contains(w.Body.String(), tt.wantBody) || !strings.Contains(w.Body.String(), tt.wantError) {
				t.Errorf("status %d, body %s; want %d with %s%s", w.Code, w.Body, tt.wantCode, tt.wantBody, tt.wantError)
			}
		})
	}
}

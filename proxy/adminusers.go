package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/proxy/authapi"
)

// Admin users API bounds.
const (
	maxUserType        = 32
	maxLookupValue     = 320
	defaultFailedLimit = 100
	maxFailedLimit     = 1000
)

// UserRepo is the user table as the admin API reads and writes it: a
// *federation.Repo, on the pool or in a transaction. Every write
// invalidates the user's cache entries on every replica.
type UserRepo interface {
	FindByID(ctx context.Context, id string) (federation.User, error)
	FindByEmail(ctx context.Context, email string) (federation.User, error)
	FindByFirebaseUID(ctx context.Context, uid string) (federation.User, error)
	FindByUsername(ctx context.Context, username string) (federation.User, error)
	Update(ctx context.Context, id string, ch federation.Changes) (federation.User, error)
	SoftDelete(ctx context.Context, id string) (federation.User, error)
	HardDelete(ctx context.Context, id string) error
	Restore(ctx context.Context, id string) (federation.User, error)
	ChangeTokenBalance(ctx context.Context, id string, op federation.BalanceOp, n int64) (federation.User, int64, error)
	ListFailedFederations(ctx context.Context, limit int) ([]federation.User, error)
}

// AdminUsers is the user table of the admin API, with idempotent writes;
// StoreAdminUsers makes one of a *federation.Store.
type AdminUsers interface {
	UserRepo
	// Idempotent runs fn at most once per user and key, in a transaction
	// that keeps its answer: see federation.Store.Idempotent.
	Idempotent(ctx context.Context, userID, key string, fingerprint []byte, fn func(tx UserRepo) (federation.Answer, error)) (federation.Answer, bool, error)
}

// StoreAdminUsers returns the AdminUsers of s.
func StoreAdminUsers(s *federation.Store) AdminUsers { return storeAdminUsers{Repo: s.Repo(), s: s} }

type storeAdminUsers struct {
	*federation.Repo
	s *federation.Store
}

func (u storeAdminUsers) Idempotent(ctx context.Context, userID, key string, fingerprint []byte, fn func(tx UserRepo) (federation.Answer, error)) (federation.Answer, bool, error) {
	return u.s.Idempotent(ctx, userID, key, fingerprint, func(tx *federation.Repo) (federation.Answer, error) { return fn(tx) })
}

// Admin writes, the action label of admin_requests_total and of the audit
// log.
const (
	actionUpdateUser      = "update_user"
	actionDeleteUser      = "delete_user"
	actionHardDeleteUser  = "hard_delete_user"
	actionRestoreUser     = "restore_user"
	actionTokenBalance    = "token_balance"
	actionLinkUser        = "link_user"
	actionRetryFederation = "retry_federation"
)

// Results of admin writes, by the answer's status.
var adminResults = [...]string{"ok", "replayed", "invalid", "not_found", "conflict", "unavailable", "error"}

func adminResult(status int, replayed bool) string {
	switch {
	case replayed:
		return "replayed"
	case status < 300:
		return "ok"
	case status == http.StatusNotFound:
		return "not_found"
	case status == http.StatusConflict:
		return "conflict"
	case status == http.StatusServiceUnavailable, status == statusClientClosed:
		return "unavailable"
	case status < 500:
		return "invalid"
	}
	return "error"
}

type adminMetrics struct{ requests *prometheus.CounterVec }

func newAdminMetrics(reg prometheus.Registerer, actions []string) (*adminMetrics, error) {
	m := &adminMetrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "admin_requests_total",
		Help: "Admin API writes by action and result: ok, replayed (an Idempotency-Key retry), invalid, not_found, conflict, unavailable or error.",
	}, []string{"action", "result"})}
	for _, a := range actions {
		for _, r := range adminResults {
			m.requests.WithLabelValues(a, r)
		}
	}
	if reg != nil {
		if err := reg.Register(m.requests); err != nil {
			return nil, fmt.Errorf("register admin api metrics: %w", err)
		}
	}
	return m, nil
}

// methods routes a path's requests by method; others get 405.
type methods map[string]http.HandlerFunc

// routes registers the endpoints and returns the write actions served.
func (a *AdminAPI) routes() []string {
	a.route("/admin/users", methods{http.MethodGet: a.findUser})
	a.route("/admin/users/{id}", methods{http.MethodGet: a.getUser, http.MethodPatch: a.patchUser, http.MethodDelete: a.deleteUser})
	a.route("/admin/users/{id}/restore", methods{http.MethodPost: a.restoreUser})
	a.route("/admin/users/{id}/token-balance", methods{http.MethodPost: a.tokenBalance})
	a.route("/admin/federation/failed", methods{http.MethodGet: a.listFailed})
	actions := []string{actionUpdateUser, actionDeleteUser, actionHardDeleteUser, actionRestoreUser, actionTokenBalance}
	if a.b.Linker != nil {
		a.route("/admin/users/{id}/link", methods{http.MethodPost: a.serveLink})
		actions = append(actions, actionLinkUser)
	}
	if a.b.Retrier != nil {
		a.route("/admin/users/{id}/federation/retry", methods{http.MethodPost: a.retryFederation})
		actions = append(actions, actionRetryFederation)
	}
	if a.b.Migration != nil {
		a.route("/admin/migration", methods{http.MethodGet: a.migration})
	}
	a.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, errorAnswer(http.StatusNotFound, authapi.CodeNotFound, "no such endpoint"), false)
	})
	return actions
}

func (a *AdminAPI) route(pattern string, ms methods) {
	allow := make([]string, 0, len(ms))
	for m := range ms {
		allow = append(allow, m)
	}
	slices.Sort(allow)
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if h, ok := ms[r.Method]; ok {
			h(w, r)
			return
		}
		w.Header()["Allow"] = allow
		writeAnswer(w, errorAnswer(http.StatusMethodNotAllowed, authapi.CodeMethodNotAllowed, "method not allowed"), false)
	})
}

// adminCall is one admin write, as the audit log and the metrics see it.
type adminCall struct {
	action string
	userID string
	key    string // the Idempotency-Key, "" for none
	reqID  string
	start  time.Time
	fields []zap.Field // facts of the action (the balance operation, ...)
}

func (a *AdminAPI) call(r *http.Request, action string) *adminCall {
	return &adminCall{action: action, userID: r.PathValue("id"), reqID: r.Header.Get("X-Request-Id"), start: time.Now()}
}

// finish answers a write, ans or, when err is not nil, err's answer, and
// logs and counts it.
func (a *AdminAPI) finish(w http.ResponseWriter, c *adminCall, ans federation.Answer, replayed bool, err error) {
	if err != nil {
		status, code, msg := failure(err)
		ans = errorAnswer(status, code, msg)
	}
	writeAnswer(w, ans, replayed)
	result := adminResult(ans.Status, replayed)
	a.m.requests.WithLabelValues(c.action, result).Inc()
	fields := append([]zap.Field{zap.String("action", c.action), zap.String("user_id", c.userID),
		zap.String("result", result), zap.Int("status", ans.Status), zap.String("request_id", c.reqID),
		zap.String("idempotency_key_sha256", keyDigest(c.key)), zap.Duration("duration", time.Since(c.start))}, c.fields...)
	if ans.Status >= 500 && ans.Status != statusClientClosed {
		a.log.Error("admin api write", append(fields, zap.Error(err))...)
		return
	}
	a.log.Info("admin api write", fields...)
}

// keep is the answer to err that an idempotent write keeps (a refusal),
// or err itself when the write failed and a retry may do better.
func keep(err error) (federation.Answer, error) {
	status, code, msg := failure(err)
	if status >= 500 || status == statusClientClosed {
		return federation.Answer{}, err
	}
	return errorAnswer(status, code, msg), nil
}

// apply runs a write on the user table and answers it. With an
// Idempotency-Key header (at most 255 printable ASCII characters) it runs
// at most once per key and user: a retry with the same key and request
// (fingerprint) gets the first answer again, marked Idempotent-Replayed,
// without running; another request with the key is 422. The key is kept
// with the change, in its transaction, for federation.idempotency_ttl.
func (a *AdminAPI) apply(w http.ResponseWriter, r *http.Request, c *adminCall, fingerprint []byte, fn func(ctx context.Context, u UserRepo) (federation.Answer, error)) {
	ctx := r.Context()
	if c.key == "" {
		ans, err := fn(ctx, a.b.Users)
		a.finish(w, c, ans, false, err)
		return
	}
	ans, replayed, err := a.b.Users.Idempotent(ctx, c.userID, c.key, fingerprint, func(tx UserRepo) (federation.Answer, error) {
		return fn(ctx, tx)
	})
	a.finish(w, c, ans, replayed, err)
}

// writeCall starts a write that honours Idempotency-Key; false when the
// header is malformed, which is answered.
func (a *AdminAPI) writeCall(w http.ResponseWriter, r *http.Request, action string) (*adminCall, bool) {
	c := a.call(r, action)
	keys := r.Header.Values("Idempotency-Key")
	if len(keys) == 0 {
		return c, true
	}
	if len(keys) > 1 || !validIdempotencyKey(keys[0]) {
		a.finish(w, c, invalidAnswer("Idempotency-Key must be one header of 1 to 255 printable ASCII characters"), false, nil)
		return nil, false
	}
	c.key = keys[0]
	return c, true
}

func validIdempotencyKey(s string) bool {
	if s == "" || len(s) > federation.MaxIdempotencyKey {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// fingerprint identifies what a write asks, for Idempotency-Key retries.
func fingerprint(action string, v any) []byte {
	b, _ := json.Marshal(v) // the API's own request types
	h := sha256.New()
	h.Write([]byte(action))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil)
}

func (a *AdminAPI) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := a.b.Users.FindByID(r.Context(), r.PathValue("id"))
	a.read(w, r, userAnswer(http.StatusOK, u), err)
}

// read answers a read, ans or err's answer; a failure is logged.
func (a *AdminAPI) read(w http.ResponseWriter, r *http.Request, ans federation.Answer, err error) {
	if err != nil {
		status, code, msg := failure(err)
		ans = errorAnswer(status, code, msg)
		if status >= 500 && status != statusClientClosed {
			a.log.Error("admin api read", zap.String("path", r.Pattern), zap.String("request_id", r.Header.Get("X-Request-Id")), zap.Error(err))
		}
	}
	writeAnswer(w, ans, false)
}

// findUser answers GET /admin/users with exactly one of email,
// firebase_uid and username.
func (a *AdminAPI) findUser(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	const msg = "give exactly one of email, firebase_uid and username, once, of 1 to 320 characters"
	if len(q) != 1 {
		writeAnswer(w, invalidAnswer(msg), false)
		return
	}
	finds := map[string]func(context.Context, string) (federation.User, error){
		"email": a.b.Users.FindByEmail, "firebase_uid": a.b.Users.FindByFirebaseUID, "username": a.b.Users.FindByUsername,
	}
	for name, vals := range q {
		find, ok := finds[name]
		if !ok || len(vals) != 1 || vals[0] == "" || len(vals[0]) > maxLookupValue {
			writeAnswer(w, invalidAnswer(msg), false)
			return
		}
		u, err := find(r.Context(), vals[0])
		a.read(w, r, userAnswer(http.StatusOK, u), err)
	}
}

// userPatch is the body of PATCH /admin/users/{id}.
type userPatch struct {
	Username *string `json:"username,omitempty"`
	UserType *string `json:"userType,omitempty"`
	IsActive *bool   `json:"isActive,omitempty"`
}

func (a *AdminAPI) patchUser(w http.ResponseWriter, r *http.Request) {
	c, ok := a.writeCall(w, r, actionUpdateUser)
	if !ok {
		return
	}
	var body userPatch
	if ans, ok := decodeAdmin(w, r, &body, `{"username"?, "userType"?, "isActive"?}`); !ok {
		a.finish(w, c, ans, false, nil)
		return
	}
	var msg string
	switch {
	case body.Username == nil && body.UserType == nil && body.IsActive == nil:
		msg = "give at least one of username, userType and isActive"
	case body.Username != nil && !authapi.ValidUsername(*body.Username):
		msg = "username must be 3 to 32 letters, digits, '_', '.' or '-'"
	case body.UserType != nil && !validUserType(*body.UserType):
		msg = "userType must be 1 to 32 ASCII letters, digits, '_', '.' or '-'"
	}
	if msg != "" {
		a.finish(w, c, invalidAnswer(msg), false, nil)
		return
	}
	if body.IsActive != nil {
		c.fields = append(c.fields, zap.Bool("is_active", *body.IsActive))
	}
	a.apply(w, r, c, fingerprint(c.action, body), func(ctx context.Context, u UserRepo) (federation.Answer, error) {
		row, err := u.Update(ctx, c.userID, federation.Changes{Username: body.Username, UserType: body.UserType, IsActive: body.IsActive})
		if err != nil {
			return keep(err)
		}
		return userAnswer(http.StatusOK, row), nil
	})
}

// validUserType reports whether s is 1 to 32 ASCII letters, digits, '_',
// '.' or '-': a role that route rules (user_type) can name.
func validUserType(s string) bool {
	if s == "" || len(s) > maxUserType {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '.' || b == '-') {
			return false
		}
	}
	return true
}

func (a *AdminAPI) deleteUser(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	hard := q.Get("hard") == "true"
	action := actionDeleteUser
	if hard {
		action = actionHardDeleteUser
	}
	c, ok := a.writeCall(w, r, action)
	if !ok {
		return
	}
	if h, set := q["hard"]; len(q) > 1 || len(q) == 1 && (!set || len(h) != 1 || h[0] != "true" && h[0] != "false") {
		a.finish(w, c, invalidAnswer("the only query parameter is hard=true or hard=false"), false, nil)
		return
	}
	a.apply(w, r, c, fingerprint(c.action, nil), func(ctx context.Context, u UserRepo) (federation.Answer, error) {
		if hard {
			if err := u.HardDelete(ctx, c.userID); err != nil {
				return keep(err)
			}
			return federation.Answer{Status: http.StatusNoContent}, nil
		}
		row, err := u.SoftDelete(ctx, c.userID)
		if err != nil {
			return keep(err)
		}
		return userAnswer(http.StatusOK, row), nil
	})
}

func (a *AdminAPI) restoreUser(w http.ResponseWriter, r *http.Request) {
	c, ok := a.writeCall(w, r, actionRestoreUser)
	if !ok {
		return
	}
	a.apply(w, r, c, fingerprint(c.action, nil), func(ctx context.Context, u UserRepo) (federation.Answer, error) {
		row, err := u.Restore(ctx, c.userID)
		if err != nil {
			return keep(err)
		}
		return userAnswer(http.StatusOK, row), nil
	})
}

// balanceChange is the body of POST /admin/users/{id}/token-balance.
type balanceChange struct {
	Op     string          `json:"op"`
	Amount json.RawMessage `json:"amount"`
}

// balanceAnswer is the answer to a token balance change.
type balanceAnswer struct {
	ID              string `json:"id"`
	TokenBalance    int64  `json:"tokenBalance"`
	PreviousBalance int64  `json:"previousBalance"`
}

func (a *AdminAPI) tokenBalance(w http.ResponseWriter, r *http.Request) {
	c, ok := a.writeCall(w, r, actionTokenBalance)
	if !ok {
		return
	}
	var body balanceChange
	if ans, ok := decodeAdmin(w, r, &body, `{"op": "increment"|"decrement"|"set", "amount": N}`); !ok {
		a.finish(w, c, ans, false, nil)
		return
	}
	op := federation.BalanceOp(body.Op)
	n, err := strconv.ParseInt(string(body.Amount), 10, 64)
	var msg string
	switch {
	case op != federation.BalanceIncrement && op != federation.BalanceDecrement && op != federation.BalanceSet:
		msg = `op must be "increment", "decrement" or "set"`
	case err != nil || n < 0:
		msg = "amount must be a non-negative integer within int64"
	case n == 0 && op != federation.BalanceSet:
		msg = "amount must be positive for increment and decrement"
	}
	if msg != "" {
		a.finish(w, c, invalidAnswer(msg), false, nil)
		return
	}
	c.fields = append(c.fields, zap.String("op", body.Op), zap.Int64("amount", n))
	fp := fingerprint(c.action, struct {
		Op     string
		Amount int64
	}{body.Op, n})
	a.apply(w, r, c, fp, func(ctx context.Context, u UserRepo) (federation.Answer, error) {
		row, prev, err := u.ChangeTokenBalance(ctx, c.userID, op, n)
		if err != nil {
			return keep(err)
		}
		return jsonAnswer(http.StatusOK, &balanceAnswer{ID: row.ID, TokenBalance: row.TokenBalance, PreviousBalance: prev}), nil
	})
}

// failedUser is a user of the failed federations list: the user and its
// sync state.
type failedUser struct {
	*authapi.User
	SyncAttempts  int        `json:"syncAttempts"`
	LastSyncError string     `json:"lastSyncError,omitempty"`
	LastSyncedAt  *time.Time `json:"lastSyncedAt,omitempty"`
}

func failedUserOf(u federation.User) failedUser {
	f := failedUser{User: authapi.UserOf(u), SyncAttempts: u.SyncAttempts, LastSyncError: u.LastSyncError}
	if !u.LastSyncedAt.IsZero() {
		f.LastSyncedAt = &u.LastSyncedAt
	}
	return f
}

func (a *AdminAPI) listFailed(w http.ResponseWriter, r *http.Request) {
	limit := defaultFailedLimit
	q := r.URL.Query()
	if l, set := q["limit"]; len(q) > 1 || len(q) == 1 && !set || set && len(l) != 1 {
		writeAnswer(w, invalidAnswer("the only query parameter is limit"), false)
		return
	} else if set {
		n, err := strconv.Atoi(l[0])
		if err != nil || n < 1 || n > maxFailedLimit {
			writeAnswer(w, invalidAnswer(fmt.Sprintf("limit must be 1 to %d", maxFailedLimit)), false)
			return
		}
		limit = n
	}
	rows, err := a.b.Users.ListFailedFederations(r.Context(), limit)
	list := struct {
		Users []failedUser `json:"users"`
	}{Users: make([]failedUser, 0, len(rows))}
	for _, u := range rows {
		list.Users = append(list.Users, failedUserOf(u))
	}
	a.read(w, r, jsonAnswer(http.StatusOK, &list), err)
}

func (a *AdminAPI) retryFederation(w http.ResponseWriter, r *http.Request) {
	c := a.call(r, actionRetryFederation)
	u, res, err := a.b.Retrier.RetryFederation(r.Context(), c.userID)
	c.fields = append(c.fields, zap.String("retry_result", res))
	a.finish(w, c, jsonAnswer(http.StatusOK, &struct {
		Result string     `json:"result"`
		User   failedUser `json:"user"`
	}{res, failedUserOf(u)}), false, err)
}

// keyDigest is how an Idempotency-Key appears in the audit log: the first
// 16 hex digits of its SHA-256 ("" without a key). The client chooses the
// key, and may well put an email or an order number in it; the digest
// still lets an operator find the line for a key they were given.
func keyDigest(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

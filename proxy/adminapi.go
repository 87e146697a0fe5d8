package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/proxy/authapi"
)

// Admin API bounds.
const (
	maxAdminAPIBody = 4 << 10
	maxFirebaseUID  = 128 // Firebase's own bound
)

// Linker links a platform account to a Firebase user, for the admin API:
// it returns the linked row, or an error wrapping federation.ErrNotFound
// (no such live account), ErrConflict (the account or the uid is linked
// elsewhere), ErrUnknownFirebaseUser, ErrUnavailable or
// ErrFirebaseUnavailable.
type Linker interface {
	LinkUser(ctx context.Context, userID, firebaseUID string) (federation.User, error)
}

// Retrier retries a failed federation at once, reading the Firebase user
// records: see federation.Store.RetryFederation.
type Retrier interface {
	RetryFederation(ctx context.Context, userID string) (federation.User, string, error)
}

// AdminBackends are what the admin API works with. Users is required when
// a secret is set. Linker and Retrier read Firebase user records and may
// be nil: their endpoints then answer 404.
type AdminBackends struct {
	Users   AdminUsers
	Linker  Linker
	Retrier Retrier
	// Migration serves GET /admin/migration; nil answers 404.
	Migration *Migration
}

// AdminAPI serves the admin operations on the admin listener, under
// /admin/ (see the README for each):
//
//	GET    /admin/users/{id}, /admin/users?email=|firebase_uid=|username=
//	PATCH  /admin/users/{id}                  {"username"?, "userType"?, "isActive"?}
//	DELETE /admin/users/{id}[?hard=true]
//	POST   /admin/users/{id}/restore
//	POST   /admin/users/{id}/token-balance    {"op": "increment"|"decrement"|"set", "amount": N}
//	GET    /admin/federation/failed?limit=N
//	POST   /admin/users/{id}/link             {"firebase_uid": "..."}  (with a Linker)
//	POST   /admin/users/{id}/federation/retry                          (with a Retrier)
//	GET    /admin/migration                                            (with a Migration)
//
// Every request must carry "Authorization: Bearer <secret>"; without a
// configured secret the API is off and answers 404. Answers are JSON; an
// error is authapi.ErrorBody with one of authapi's codes. The writes on
// the user table honour an Idempotency-Key header (see apply). Each write
// logs one audit line and counts in admin_requests_total. It never logs
// the secret nor an email. It is safe for concurrent use.
type AdminAPI struct {
	on     bool
	secret [sha256.Size]byte // SHA-256 of the secret: compared in constant time, whatever the length
	b      AdminBackends
	log    *zap.Logger
	mux    *http.ServeMux
	ids    *requestIDs
	m      *adminMetrics
}

// NewAdminAPI builds the admin API from cfg's secret (api_secret or
// api_secret_file). b.Users may be nil only when no secret is set; log
// and reg may be nil.
func NewAdminAPI(cfg AdminConfig, b AdminBackends, log *zap.Logger, reg prometheus.Registerer) (*AdminAPI, error) {
	secret, err := cfg.apiSecret()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	a := &AdminAPI{on: secret != "", b: b, log: log.Named("admin_api"), mux: http.NewServeMux(), ids: newRequestIDs()}
	if !a.on {
		return a, nil
	}
	if b.Users == nil {
		return nil, errors.New("admin api: a secret is set but there is no user table (federation.enabled)")
	}
	a.secret = sha256.Sum256([]byte(secret))
	actions := a.routes()
	if a.m, err = newAdminMetrics(reg, actions); err != nil {
		return nil, err
	}
	return a, nil
}

// Enabled reports whether a secret is configured, so that the API serves.
func (a *AdminAPI) Enabled() bool { return a.on }

// ServeHTTP implements http.Handler.
func (a *AdminAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.on {
		writeError(w, http.StatusNotFound)
		return
	}
	// Authenticate before anything else: without the secret no path,
	// method or body gets a different answer.
	if !a.authorized(r) {
		a.log.Warn("admin api: request without the admin secret",
			zap.String("method", r.Method), zap.String("remote_addr", r.RemoteAddr))
		w.Header()["Www-Authenticate"] = wwwAuthMissing
		writeAnswer(w, errorAnswer(http.StatusUnauthorized, authapi.CodeUnauthorized, "a valid admin bearer secret is required"), false)
		return
	}
	id := a.ids.get(r.Header.Get("X-Request-Id"))
	r.Header["X-Request-Id"] = []string{id}
	w.Header()["X-Request-Id"] = []string{id}
	a.mux.ServeHTTP(w, r)
}

// authorized reports whether r carries the secret, in exactly one
// Authorization header.
func (a *AdminAPI) authorized(r *http.Request) bool {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return false
	}
	scheme, cred, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	return subtle.ConstantTimeCompare(got[:], a.secret[:]) == 1
}

func (a *AdminAPI) serveLink(w http.ResponseWriter, r *http.Request) {
	c := a.call(r, actionLinkUser)
	var body struct {
		FirebaseUID string `json:"firebase_uid"`
	}
	if ans, ok := decodeAdmin(w, r, &body, `{"firebase_uid": "..."}`); !ok {
		a.finish(w, c, ans, false, nil)
		return
	}
	if !validFirebaseUID(body.FirebaseUID) {
		a.finish(w, c, invalidAnswer("firebase_uid must be 1 to 128 printable characters"), false, nil)
		return
	}
	c.fields = append(c.fields, zap.String("firebase_uid", body.FirebaseUID))
	u, err := a.b.Linker.LinkUser(r.Context(), c.userID, body.FirebaseUID)
	a.finish(w, c, userAnswer(http.StatusOK, u), false, err)
}

// validFirebaseUID reports whether s could be a Firebase uid: 1 to 128
// bytes, no control characters.
func validFirebaseUID(s string) bool {
	if s == "" || len(s) > maxFirebaseUID {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return true
}

// decodeAdmin reads the JSON body, one object of the fields of v and no
// others, of at most maxAdminAPIBody bytes; when it cannot, it returns
// the answer and false.
func decodeAdmin(w http.ResponseWriter, r *http.Request, v any, shape string) (federation.Answer, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxAdminAPIBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		_, err = io.Copy(io.Discard, r.Body) // reach the limit, if beyond it
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return errorAnswer(http.StatusRequestEntityTooLarge, authapi.CodeRequestTooLarge, "request body too large"), false
	case err != nil:
		return invalidAnswer("body must be JSON " + shape), false
	}
	return federation.Answer{}, true
}

// failure maps an error of the backends to its answer.
func failure(err error) (status int, code, msg string) {
	switch {
	case errors.Is(err, federation.ErrIdempotencyKeyReused):
		return http.StatusUnprocessableEntity, authapi.CodeIdempotencyKeyReused, "the Idempotency-Key was used for another request on this account"
	case errors.Is(err, federation.ErrUnknownFirebaseUser):
		return http.StatusUnprocessableEntity, authapi.CodeUnknownFirebaseUser, "no Firebase user has this uid"
	case errors.Is(err, federation.ErrNotFound):
		return http.StatusNotFound, authapi.CodeUserNotFound, "no account has this id"
	case errors.Is(err, federation.ErrInsufficientBalance):
		return http.StatusConflict, authapi.CodeInsufficientBalance, "the token balance is less than the amount; nothing was changed"
	case errors.Is(err, federation.ErrBalanceOverflow):
		return http.StatusConflict, authapi.CodeBalanceOverflow, "the token balance would exceed the largest int64; nothing was changed"
	case errors.Is(err, federation.ErrNotFailed):
		return http.StatusConflict, authapi.CodeFederationNotFailed, "the federation of this account has not failed"
	case errors.Is(err, federation.ErrUsernameTaken):
		return http.StatusConflict, authapi.CodeUsernameTaken, "the username is taken"
	case errors.Is(err, federation.ErrEmailTaken):
		return http.StatusConflict, authapi.CodeEmailExists, "a live account has this email"
	case errors.Is(err, federation.ErrConflict):
		return http.StatusConflict, authapi.CodeConflict, "the account is linked to another Firebase user, or the Firebase user to another account"
	case errors.Is(err, federation.ErrUnavailable), errors.Is(err, federation.ErrFirebaseUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, authapi.CodeUnavailable, "the user store or Firebase is unavailable; try again"
	case errors.Is(err, context.Canceled):
		return statusClientClosed, "", ""
	default:
		return http.StatusInternalServerError, authapi.CodeInternal, "internal error"
	}
}

// errorAnswer is an error answer in the auth API's shape.
func errorAnswer(status int, code, msg string) federation.Answer {
	return jsonAnswer(status, &authapi.ErrorBody{Error: authapi.ErrorDetail{Code: code, Message: msg}})
}

func invalidAnswer(msg string) federation.Answer {
	return errorAnswer(http.StatusBadRequest, authapi.CodeInvalidRequest, msg)
}

// jsonAnswer is status with v as JSON.
func jsonAnswer(status int, v any) federation.Answer {
	b, err := json.Marshal(v)
	if err != nil { // the API's own types: cannot happen
		return federation.Answer{Status: http.StatusInternalServerError}
	}
	return federation.Answer{Status: status, Body: append(b, '\n')}
}

func userAnswer(status int, u federation.User) federation.Answer {
	return jsonAnswer(status, authapi.UserOf(u))
}

var idempotentReplayed = []string{"true"}

// writeAnswer writes ans; replayed marks an answer kept from an earlier
// request with the same Idempotency-Key.
func writeAnswer(w http.ResponseWriter, ans federation.Answer, replayed bool) {
	if ans.Status == statusClientClosed {
		return
	}
	hdr := w.Header()
	hdr["Cache-Control"] = noStore
	hdr["X-Content-Type-Options"] = nosniff
	if len(ans.Body) > 0 {
		hdr["Content-Type"] = jsonType
	}
	if replayed {
		hdr["Idempotent-Replayed"] = idempotentReplayed
	}
	w.WriteHeader(ans.Status)
	_, _ = w.Write(ans.Body)
}

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
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/authgate/authgate/federation"
)

// Admin API bounds.
const (
	maxAdminAPIBody  = 4 << 10
	maxFirebaseUID   = 128 // Firebase's own bound
	adminLinkPattern = "/admin/users/{id}/link"
)

// Linker links a platform account to a Firebase user, for the admin API:
// it returns the linked row, or an error wrapping federation.ErrNotFound
// (no such live account), ErrConflict (the account or the uid is linked
// elsewhere), ErrUnknownFirebaseUser, ErrUnavailable or
// ErrFirebaseUnavailable.
type Linker interface {
	LinkUser(ctx context.Context, userID, firebaseUID string) (federation.User, error)
}

// AdminAPI serves the admin operations on the admin listener:
//
//	POST /admin/users/{id}/link  {"firebase_uid": "..."}
//
// links the account id to a Firebase user, for migrating a legacy account.
// Every request must carry "Authorization: Bearer <secret>"; without a
// configured secret the API is off and answers 404. It never logs the
// secret. It is safe for concurrent use.
type AdminAPI struct {
	on     bool
	secret [sha256.Size]byte // SHA-256 of the secret: compared in constant time, whatever the length
	linker Linker
	log    *zap.Logger
	mux    *http.ServeMux
}

// NewAdminAPI builds the admin API from cfg's secret (api_secret or
// api_secret_file). l may be nil only when no secret is set; log may be
// nil.
func NewAdminAPI(cfg AdminConfig, l Linker, log *zap.Logger) (*AdminAPI, error) {
	secret, err := cfg.apiSecret()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	a := &AdminAPI{on: secret != "", linker: l, log: log.Named("admin_api"), mux: http.NewServeMux()}
	if !a.on {
		return a, nil
	}
	if l == nil {
		return nil, errors.New("admin api: a secret is set but there is nothing to link users with")
	}
	a.secret = sha256.Sum256([]byte(secret))
	a.mux.HandleFunc(adminLinkPattern, a.serveLink)
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
		adminAnswer(w, http.StatusUnauthorized, "unauthorized", "a valid admin bearer secret is required")
		return
	}
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

// adminUser is the user object of the admin API, camelCase like the
// token API's.
type adminUser struct {
	ID               string `json:"id"`
	FirebaseUID      string `json:"firebaseUid,omitempty"`
	Email            string `json:"email,omitempty"`
	FederationStatus string `json:"federationStatus"`
}

type adminError struct {
	Error tokenAPIError `json:"error"`
}

func (a *AdminAPI) serveLink(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = []string{http.MethodPost}
		writeError(w, http.StatusMethodNotAllowed)
		return
	}
	var body struct {
		FirebaseUID string `json:"firebase_uid"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxAdminAPIBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(&body)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		_, err = io.Copy(io.Discard, r.Body) // reach the limit, if beyond it
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		adminAnswer(w, http.StatusRequestEntityTooLarge, "request_too_large", "request body too large")
		return
	case err != nil:
		adminAnswer(w, http.StatusBadRequest, "invalid_request", `body must be JSON {"firebase_uid": "..."}`)
		return
	case !validFirebaseUID(body.FirebaseUID):
		adminAnswer(w, http.StatusBadRequest, "invalid_request", "firebase_uid must be 1 to 128 printable characters")
		return
	}

	id := r.PathValue("id")
	start := time.Now()
	u, err := a.linker.LinkUser(r.Context(), id, body.FirebaseUID)
	status, code, msg := linkStatus(err)
	fields := []zap.Field{zap.String("user_id", id), zap.String("firebase_uid", body.FirebaseUID),
		zap.Int("status", status), zap.Duration("duration", time.Since(start))}
	switch {
	case err == nil:
		a.log.Info("admin api: account linked", fields...)
	case status >= 500:
		a.log.Error("admin api: link failed", append(fields, zap.Error(err))...)
	default:
		a.log.Info("admin api: link refused", append(fields, zap.String("reason", code))...)
	}
	if err != nil {
		adminAnswer(w, status, code, msg)
		return
	}
	w.Header()["Content-Type"] = jsonType
	w.Header()["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(adminUser{
		ID: u.ID, FirebaseUID: u.FirebaseUID, Email: u.Email, FederationStatus: string(u.FederationStatus),
	})
}

// linkStatus maps a LinkUser error to the answer.
func linkStatus(err error) (status int, code, msg string) {
	switch {
	case err == nil:
		return http.StatusOK, "", ""
	case errors.Is(err, federation.ErrUnknownFirebaseUser):
		return http.StatusUnprocessableEntity, "unknown_firebase_user", "no Firebase user has this uid"
	case errors.Is(err, federation.ErrNotFound):
		return http.StatusNotFound, "user_not_found", "no live account has this id"
	case errors.Is(err, federation.ErrConflict):
		return http.StatusConflict, "conflict", "the account is linked to another Firebase user, or the Firebase user to another account"
	case errors.Is(err, federation.ErrUnavailable), errors.Is(err, federation.ErrFirebaseUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "unavailable", "the user store or Firebase is unavailable; try again"
	case errors.Is(err, context.Canceled):
		return statusClientClosed, "", ""
	default:
		return http.StatusInternalServerError, "internal", "internal error"
	}
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

// adminAnswer writes the admin API's error shape.
func adminAnswer(w http.ResponseWriter, status int, code, msg string) {
	if status == statusClientClosed {
		return
	}
	w.Header()["Content-Type"] = jsonType
	w.Header()["Cache-Control"] = noStore
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(adminError{Error: tokenAPIError{Code: code, Message: msg}})
}

package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/authgate/authgate/internal/ratelimit"
)

// maxTokenAPIBody bounds the JSON body of POST /v1/token/verify.
const maxTokenAPIBody = 16 << 10

// tokenUser is the user object of the token API, in the original service's
// shape (camelCase).
type tokenUser struct {
	ID               string `json:"id"`
	FirebaseUID      string `json:"firebaseUid,omitempty"`
	Email            string `json:"email,omitempty"`
	EmailVerified    bool   `json:"emailVerified"`
	Username         string `json:"username,omitempty"`
	UserType         string `json:"userType,omitempty"`
	Provider         string `json:"provider"`
	FederationStatus string `json:"federationStatus"`
	// TokenBalance is the business field of the user row, when there is one.
	TokenBalance *int64 `json:"tokenBalance,omitempty"`
}

type tokenAPIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type tokenAPIResponse struct {
	Valid bool           `json:"valid"`
	User  *tokenUser     `json:"user,omitempty"`
	Error *tokenAPIError `json:"error,omitempty"`
}

// serveTokenAPI serves the original service's /v1/token endpoints for its
// existing clients. They verify a token; route rules do not apply, since
// the request is about the token, not about a resource.
func (h *handler) serveTokenAPI(w http.ResponseWriter, r *http.Request, out *outcome) {
	switch strings.TrimPrefix(r.URL.Path, h.apiPath) {
	case "/verify":
		if !allowMethod(w, r, http.MethodPost, out) || !h.tokenAPIAllow(w, out, h.apiPerIP, h.clientIP(r).String()) {
			return
		}
		var body struct {
			Token string `json:"token"`
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenAPIBody)
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&body); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				h.tokenAPIAnswer(w, out, http.StatusRequestEntityTooLarge, "request_too_large", "request body too large", nil)
				return
			}
			h.tokenAPIAnswer(w, out, http.StatusBadRequest, "invalid_request", `body must be JSON {"token": "..."}`, errBadRequest)
			return
		}
		if body.Token == "" {
			h.tokenAPIAnswer(w, out, http.StatusBadRequest, "invalid_request", "token is required", errBadRequest)
			return
		}
		h.tokenAPIVerify(w, r, out, body.Token)
	case "/verify-header":
		if !allowMethod(w, r, http.MethodPost, out) || !h.tokenAPIAllow(w, out, h.apiPerIP, h.clientIP(r).String()) {
			return
		}
		tok, err := h.extractToken(r.Header)
		switch {
		case err != nil:
			h.tokenAPIAnswer(w, out, http.StatusBadRequest, "invalid_request", "more than one token in the request", err)
		case tok == "":
			w.Header()["Www-Authenticate"] = wwwAuthMissing
			h.tokenAPIAnswer(w, out, http.StatusUnauthorized, "missing_token", "no bearer token", errNoToken)
		default:
			h.tokenAPIVerify(w, r, out, tok)
		}
	case "/health":
		if !allowMethod(w, r, http.MethodGet, out) {
			return
		}
		res := Readiness{Status: "ready"}
		if h.ready != nil {
			res = h.ready(r.Context())
		}
		out.status = http.StatusOK
		if res.Status == "not_ready" || res.Status == "draining" {
			out.status = http.StatusServiceUnavailable
		}
		w.Header()["Content-Type"] = jsonType
		w.Header()["Cache-Control"] = noStore
		w.WriteHeader(out.status)
		_ = json.NewEncoder(w).Encode(publicReadiness(res))
	default:
		out.status = http.StatusNotFound
		writeError(w, out.status)
	}
}

// publicReadiness is res as the public listener may show it: each
// dependency's status and nothing else. The errors name addresses, database
// users and driver messages; they stay on the admin listener's /readyz
// and in the log.
func publicReadiness(res Readiness) Readiness {
	out := Readiness{Status: res.Status, Checks: make(map[string]CheckState, len(res.Checks))}
	for name, st := range res.Checks {
		out.Checks[name] = CheckState{Status: st.Status}
	}
	return out
}

func (h *handler) tokenAPIVerify(w http.ResponseWriter, r *http.Request, out *outcome, tok string) {
	p, err := h.resolve(r.Context(), tok)
	out.userID = p.userID()
	if err != nil {
		status := statusFor(err)
		switch status {
		case http.StatusUnauthorized:
			w.Header()["Www-Authenticate"] = wwwAuthInvalid
			h.tokenAPIAnswer(w, out, status, "invalid_token", "token is invalid or expired", err)
		case http.StatusForbidden:
			h.tokenAPIAnswer(w, out, status, "user_refused", "the user may not sign in", err)
		case statusClientClosed:
			out.status, out.err = status, err
		default:
			h.tokenAPIAnswer(w, out, status, "unavailable", "token verification is unavailable", err)
		}
		return
	}
	if !h.tokenAPIAllow(w, out, h.apiPerIdentity, string(p.id.Provider)+"\x00"+p.id.Subject) {
		return
	}
	v := identityValues(&p, true)
	u := &tokenUser{
		ID:               v[slotUserID],
		FirebaseUID:      v[slotFirebaseUID],
		Email:            v[slotEmail],
		EmailVerified:    p.id.EmailVerified,
		Username:         v[slotName],
		UserType:         v[slotType],
		Provider:         v[slotProvider],
		FederationStatus: v[slotFederation],
	}
	if p.user.ID != "" {
		u.TokenBalance = &p.user.TokenBalance
	}
	h.tokenAPIAnswer(w, out, http.StatusOK, "", "", nil, u)
}

// tokenAPIAllow takes one request from key's bucket in l and, when it is
// empty, answers 429 with Retry-After and returns false.
func (h *handler) tokenAPIAllow(w http.ResponseWriter, out *outcome, l *ratelimit.Limiter, key string) bool {
	ok, wait := l.Allow(key)
	if !ok {
		w.Header()["Retry-After"] = []string{strconv.Itoa(int(wait / time.Second))}
		h.tokenAPIAnswer(w, out, http.StatusTooManyRequests, "rate_limited", "too many requests; retry later", errRateLimited)
	}
	return ok
}

var jsonType = []string{"application/json"}

// tokenAPIAnswer writes the token API's one JSON shape.
func (h *handler) tokenAPIAnswer(w http.ResponseWriter, out *outcome, status int, code, msg string, err error, user ...*tokenUser) {
	out.status = status
	if out.err == nil {
		out.err = err
	}
	resp := tokenAPIResponse{Valid: status == http.StatusOK}
	if len(user) > 0 {
		resp.User = user[0]
	}
	if code != "" {
		resp.Error = &tokenAPIError{Code: code, Message: msg}
	}
	w.Header()["Content-Type"] = jsonType
	w.Header()["Cache-Control"] = noStore
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

func allowMethod(w http.ResponseWriter, r *http.Request, method string, out *outcome) bool {
	if r.Method == method {
		return true
	}
	w.Header()["Allow"] = []string{method}
	out.status = http.StatusMethodNotAllowed
	writeError(w, out.status)
	return false
}

package authapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Error codes: the stable "code" of every error answer. Clients branch on
// them; the message is for people and may change.
const (
	// CodeInvalidRequest (400): the body is not the JSON expected, a
	// field is missing or malformed, or the token is of a kind the
	// endpoint does not take.
	CodeInvalidRequest = "invalid_request"
	// CodeRequestTooLarge (413): the body is over 16 KiB.
	CodeRequestTooLarge = "request_too_large"
	// CodeWeakPassword (400): the new password does not meet the policy.
	CodeWeakPassword = "weak_password"
	// CodeInvalidCredentials (401): wrong email or password. The same
	// answer, after the same work, whether or not the email has an
	// account.
	CodeInvalidCredentials = "invalid_credentials"
	// CodeInvalidToken (401): the bearer or refresh token is missing,
	// invalid, expired or revoked.
	CodeInvalidToken = "invalid_token"
	// CodeUserDisabled (403): the account is disabled.
	CodeUserDisabled = "user_disabled"
	// CodeUserRefused (403): the Firebase account may not be linked to
	// the platform account with its email (see federation).
	CodeUserRefused = "user_refused"
	// CodeEmailExists (409): an account has the email already.
	CodeEmailExists = "email_exists"
	// CodeUsernameTaken (409): an account has the username already.
	CodeUsernameTaken = "username_taken"
	// CodeRateLimited (429): too many requests from the client or for
	// the email; Retry-After says when to try again.
	CodeRateLimited = "rate_limited"
	// CodeNotFound (404) and CodeMethodNotAllowed (405): no such
	// endpoint, or not with this method.
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeUnavailable (503): Firebase or the user table could not do
	// their part; try again later.
	CodeUnavailable = "unavailable"
)

// Codes of the admin API (proxy.AdminAPI), which answers in this shape
// too, with the codes above where they fit.
const (
	// CodeUnauthorized (401): the admin bearer secret is missing or wrong.
	CodeUnauthorized = "unauthorized"
	// CodeUserNotFound (404): no account has the id, or none matches the
	// query.
	CodeUserNotFound = "user_not_found"
	// CodeConflict (409): the change breaks a rule of the user table (an
	// account linked to another Firebase user, say).
	CodeConflict = "conflict"
	// CodeInsufficientBalance (409): a decrement would take the token
	// balance below zero; nothing was changed.
	CodeInsufficientBalance = "insufficient_balance"
	// CodeBalanceOverflow (409): an increment would take the token
	// balance past the largest int64; nothing was changed.
	CodeBalanceOverflow = "balance_overflow"
	// CodeFederationNotFailed (409): a federation retry of an account
	// whose federation has not failed.
	CodeFederationNotFailed = "federation_not_failed"
	// CodeIdempotencyKeyReused (422): the Idempotency-Key was used with
	// another request for this account.
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	// CodeUnknownFirebaseUser (422): no Firebase user has the uid.
	CodeUnknownFirebaseUser = "unknown_firebase_user"
	// CodeInternal (500): an error of authgate's own.
	CodeInternal = "internal"
)

// codes lists every code of the auth API, for metrics.
var codes = [...]string{
	CodeInvalidRequest, CodeRequestTooLarge, CodeWeakPassword, CodeInvalidCredentials, CodeInvalidToken,
	CodeUserDisabled, CodeUserRefused, CodeEmailExists, CodeUsernameTaken, CodeRateLimited,
	CodeNotFound, CodeMethodNotAllowed, CodeUnavailable,
}

// apiError is an error answer: what the client gets (status, code,
// message) and what only the log gets (cause).
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter time.Duration // for 429
	cause      error
}

func newError(status int, code, msg string, cause error) *apiError {
	return &apiError{status: status, code: code, msg: msg, cause: cause}
}

// Answers used in more than one place. Each call gets its own copy, since
// the cause is per request.
func errInvalidCredentials(cause error) *apiError {
	return newError(http.StatusUnauthorized, CodeInvalidCredentials, "wrong email or password", cause)
}

func errInvalidToken(cause error) *apiError {
	return newError(http.StatusUnauthorized, CodeInvalidToken, "the token is missing, invalid, expired or revoked", cause)
}

func errUnavailable(cause error) *apiError {
	return newError(http.StatusServiceUnavailable, CodeUnavailable, "the service is unavailable; try again later", cause)
}

func errRateLimited(wait time.Duration) *apiError {
	e := newError(http.StatusTooManyRequests, CodeRateLimited, "too many requests; try again later", nil)
	e.retryAfter = wait
	return e
}

// ErrorBody is the one JSON shape of every error answer, the admin API's
// (proxy.AdminAPI) too.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is an error answer's code, one of the Code constants, and
// its message, a fixed text: never a value from the request or a cause.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
	nosniff  = []string{"nosniff"}
)

// writeJSON answers status with v as JSON. Answers may carry tokens, so
// nothing caches them.
func writeJSON(w http.ResponseWriter, status int, v any) {
	hdr := w.Header()
	hdr["Content-Type"] = jsonType
	hdr["Cache-Control"] = noStore
	hdr["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// writeError answers e.
func writeError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header()["Retry-After"] = []string{strconv.Itoa(int(e.retryAfter / time.Second))}
	}
	writeJSON(w, e.status, &ErrorBody{Error: ErrorDetail{Code: e.code, Message: e.msg}})
}

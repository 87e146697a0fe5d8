package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/verify"
)

// Errors of the HTTP pipeline. Each maps to one status in statusFor.
var (
	errNoRoute        = errors.New("no route matches")
	errDenied         = errors.New("route denies all requests")
	errNoToken        = errors.New("no token")
	errForbidden      = errors.New("route requirements not met")
	errAmbiguousToken = errors.New("more than one token in the request")
	errUntrustedPeer  = errors.New("forward-auth request from a peer outside trusted_proxies")
	errNoOriginalURI  = errors.New("forward-auth request without the original URI")
	// errConflictingOriginal: the headers that describe the original
	// request disagree, so a client added one of its own.
	errConflictingOriginal = errors.New("forward-auth headers disagree about the original request")
	errBadRequest          = errors.New("bad request")
	errUpstream            = errors.New("upstream unavailable")
	errUpstreamTime        = errors.New("upstream timed out")
	errRateLimited         = errors.New("rate limit exceeded")
)

// statusClientClosed is nginx's code for a client that went away; it is only
// logged, never seen by a client.
const statusClientClosed = 499

// statusFor is the one mapping from an error to a status code.
func statusFor(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, errAmbiguousPath), errors.Is(err, errAmbiguousToken), errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errNoToken), errors.Is(err, errLegacyRefused),
		errors.Is(err, verify.ErrMalformed),
		errors.Is(err, verify.ErrInvalid),
		errors.Is(err, verify.ErrExpired),
		errors.Is(err, verify.ErrUnknownIssuer),
		errors.Is(err, verify.ErrNotResponsible),
		errors.Is(err, verify.ErrRevoked):
		return http.StatusUnauthorized
	case errors.Is(err, federation.ErrUserDisabled), errors.Is(err, federation.ErrLinkRefused),
		errors.Is(err, federation.ErrUnknownUser):
		return http.StatusForbidden
	case errors.Is(err, federation.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, errNoRoute), errors.Is(err, errDenied), errors.Is(err, errForbidden),
		errors.Is(err, errUntrustedPeer), errors.Is(err, errNoOriginalURI), errors.Is(err, errConflictingOriginal):
		return http.StatusForbidden
	case errors.Is(err, errRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, context.Canceled):
		return statusClientClosed
	case errors.Is(err, errUpstreamTime):
		return http.StatusGatewayTimeout
	case errors.Is(err, errUpstream):
		return http.StatusBadGateway
	case errors.Is(err, verify.ErrKeysUnavailable), errors.Is(err, verify.ErrRevocationUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// reasonFor is a short fixed label for logs.
func reasonFor(err error) string {
	var rep reportedError
	if errors.As(err, &rep) {
		return string(rep)
	}
	switch {
	case errors.Is(err, errNoRoute):
		return "no_route"
	case errors.Is(err, errDenied):
		return "route_denied"
	case errors.Is(err, errNoToken):
		return "no_token"
	case errors.Is(err, errForbidden):
		return "forbidden"
	case errors.Is(err, errAmbiguousToken):
		return "ambiguous_token"
	case errors.Is(err, errAmbiguousPath):
		return "ambiguous_path"
	case errors.Is(err, errUntrustedPeer):
		return "untrusted_peer"
	case errors.Is(err, errNoOriginalURI):
		return "no_original_uri"
	case errors.Is(err, errConflictingOriginal):
		return "conflicting_original"
	case errors.Is(err, errUpstreamTime):
		return "upstream_timeout"
	case errors.Is(err, errUpstream):
		return "upstream_error"
	case errors.Is(err, errBadRequest):
		return "bad_request"
	case errors.Is(err, errRateLimited):
		return "rate_limited"
	case errors.Is(err, errLegacyRefused):
		return "legacy_refused"
	case errors.Is(err, federation.ErrUserDisabled):
		return "user_disabled"
	case errors.Is(err, federation.ErrLinkRefused):
		return "link_refused"
	case errors.Is(err, federation.ErrUnknownUser):
		return "unknown_user"
	case errors.Is(err, federation.ErrUnavailable):
		return "user_store_unavailable"
	default:
		return verify.Reason(err)
	}
}

// Fixed bodies: clients never see a cause.
var statusBody = map[int]string{
	http.StatusBadRequest:            "bad request\n",
	http.StatusUnauthorized:          "unauthorized\n",
	http.StatusForbidden:             "forbidden\n",
	http.StatusNotFound:              "not found\n",
	http.StatusMethodNotAllowed:      "method not allowed\n",
	http.StatusTooManyRequests:       "too many requests\n",
	http.StatusRequestEntityTooLarge: "request too large\n",
	http.StatusInternalServerError:   "internal error\n",
	http.StatusBadGateway:            "bad gateway\n",
	http.StatusServiceUnavailable:    "service unavailable\n",
	http.StatusGatewayTimeout:        "gateway timeout\n",
}

var (
	wwwAuthMissing = []string{`Bearer`}
	wwwAuthInvalid = []string{`Bearer error="invalid_token"`}
	textPlain      = []string{"text/plain; charset=utf-8"}
	noStore        = []string{"no-store"}
	nosniff        = []string{"nosniff"}
)

// writeError answers status with its fixed body.
func writeError(w http.ResponseWriter, status int) {
	if status == statusClientClosed {
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = textPlain
	hdr["Cache-Control"] = noStore
	hdr["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	_, _ = io.WriteString(w, statusBody[status])
}

// writeAuthError answers a failed decision, with WWW-Authenticate on 401.
func writeAuthError(w http.ResponseWriter, status int, err error) {
	if status == http.StatusUnauthorized {
		switch {
		case errors.Is(err, errNoToken):
			w.Header()["Www-Authenticate"] = wwwAuthMissing
		case errors.Is(err, errLegacyRefused):
			w.Header()["Www-Authenticate"] = wwwAuthLegacy
		default:
			w.Header()["Www-Authenticate"] = wwwAuthInvalid
		}
	}
	writeError(w, status)
}

package proxy

import (
	"net/http"
	"strings"
)

// extractToken returns the bearer token of a request with headers hdr: from the Authorization header
// (scheme case-insensitive), else from the token cookie. It returns "" when
// there is none, and errAmbiguousToken when the request carries more than
// one Authorization header, more than one token cookie, or different tokens
// in the header and the cookie, since a backend might read the other one.
func (h *handler) extractToken(hdr http.Header) (string, error) {
	var tok string
	switch auth := hdr["Authorization"]; len(auth) {
	case 0:
	case 1:
		scheme, rest, _ := strings.Cut(auth[0], " ")
		if strings.EqualFold(scheme, "Bearer") {
			tok = strings.TrimSpace(rest)
			if tok == "" {
				// "Bearer" with nothing after it is a broken token, not none.
				tok = " "
			}
		}
	default:
		return "", errAmbiguousToken
	}
	if h.cfg.TokenCookie == "" || len(hdr["Cookie"]) == 0 {
		return tok, nil
	}
	var cookie string
	n := 0
	for _, c := range hdr["Cookie"] {
		// Only the token cookie is looked at; parsing every cookie of every
		// request would cost allocations for nothing.
		if !strings.Contains(c, h.cfg.TokenCookie) {
			continue
		}
		for _, part := range strings.Split(c, ";") {
			name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && name == h.cfg.TokenCookie {
				cookie = strings.Trim(val, `"`)
				n++
			}
		}
	}
	switch {
	case n == 0:
		return tok, nil
	case n > 1:
		return "", errAmbiguousToken
	case tok != "" && tok != cookie:
		return "", errAmbiguousToken
	case cookie == "":
		return " ", nil
	}
	return cookie, nil
}

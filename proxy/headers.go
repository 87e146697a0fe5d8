package proxy

import (
	"net/http"
	"strings"
)

// Default identity header names (with the default prefix X-User-). The
// suffixes are fixed; the prefix is configurable.
const (
	HeaderUserID        = "X-User-Id"
	HeaderFirebaseUID   = "X-User-Firebase-Uid"
	HeaderEmail         = "X-User-Email"
	HeaderEmailVerified = "X-User-Email-Verified"
	HeaderName          = "X-User-Name"
	HeaderType          = "X-User-Type"
	HeaderTokenBalance  = "X-User-Token-Balance"
	HeaderProvider      = "X-User-Provider"
	HeaderFederation    = "X-User-Federation"

	headerRequestID = "X-Request-Id"
)

// identitySuffixes are the parts after the prefix, in header order.
var identitySuffixes = [...]string{
	"Id", "Firebase-Uid", "Email", "Email-Verified", "Name", "Type",
	"Token-Balance", "Provider", "Federation",
}

// Identity header slots, indexes into identityHeaders.names.
const (
	slotUserID = iota
	slotFirebaseUID
	slotEmail
	slotEmailVerified
	slotName
	slotType
	slotTokenBalance
	slotProvider
	slotFederation
	numSlots
)

// identityHeaders holds the identity header names for one prefix and knows
// how to remove any spelling of them from a request.
type identityHeaders struct {
	names [numSlots]string
	// fold is the prefix folded the way a backend might fold it: lower case
	// with '_' read as '-'.
	fold string
}

func newIdentityHeaders(prefix string) identityHeaders {
	prefix = http.CanonicalHeaderKey(prefix)
	var h identityHeaders
	for i, s := range identitySuffixes {
		h.names[i] = http.CanonicalHeaderKey(prefix + s)
	}
	h.fold = foldHeader(prefix)
	return h
}

// foldHeader lower-cases s and reads '_' as '-', which is how CGI, PHP,
// nginx with underscores_in_headers, and many frameworks fold names.
func foldHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' {
			return '-'
		}
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// hasFoldedPrefix reports whether name, folded, starts with the folded
// prefix, without allocating.
func (h *identityHeaders) hasFoldedPrefix(name string) bool {
	if len(name) < len(h.fold) {
		return false
	}
	for i := 0; i < len(h.fold); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != h.fold[i] {
			return false
		}
	}
	return true
}

// strip deletes every header whose name folds into the identity prefix: any
// case, '_' for '-', any number of repeats.
func (h *identityHeaders) strip(hdr http.Header) {
	for k := range hdr {
		if h.hasFoldedPrefix(k) {
			delete(hdr, k)
		}
	}
}

// forwarded returns the Forwarded header values without any parameter
// whose name folds into the identity prefix (for=1.2.3.4;x-user-id=admin):
// RFC 7239 allows extension parameters, and a trusted proxy that passes the
// client's Forwarded on would otherwise carry a client's identity claim to
// a backend that reads it there. Values without one are returned as they
// are, without allocating.
func (h *identityHeaders) forwarded(vals []string) []string {
	dirty := false
	for _, v := range vals {
		if h.forwardedParam(v) {
			dirty = true
			break
		}
	}
	if !dirty {
		return vals
	}
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if !h.forwardedParam(v) {
			out = append(out, v)
			continue
		}
		var elems []string
		for _, elem := range strings.Split(v, ",") {
			var pairs []string
			for _, pair := range strings.Split(elem, ";") {
				if !h.hasFoldedPrefix(strings.TrimSpace(pair)) {
					pairs = append(pairs, pair)
				}
			}
			if len(pairs) > 0 {
				elems = append(elems, strings.Join(pairs, ";"))
			}
		}
		if len(elems) > 0 {
			out = append(out, strings.Join(elems, ","))
		}
	}
	return out
}

// forwardedParam reports whether the Forwarded value v has a parameter
// whose name folds into the identity prefix.
func (h *identityHeaders) forwardedParam(v string) bool {
	for i := 0; i < len(v); i++ {
		if i == 0 || v[i-1] == ';' || v[i-1] == ',' || v[i-1] == ' ' || v[i-1] == '\t' {
			if h.hasFoldedPrefix(v[i:]) {
				return true
			}
		}
	}
	return false
}

// set writes the identity into hdr. Unknown values are written as empty
// strings when full is true (forward-auth answers), so that a gateway that
// copies the headers cannot let a client's value through; otherwise they are
// left out. One backing array serves all values to keep this to one
// allocation.
func (h *identityHeaders) set(hdr http.Header, vals *[numSlots]string, full bool) {
	backing := make([]string, numSlots)
	for i, v := range vals {
		if v == "" && !full {
			continue
		}
		backing[i] = v
		hdr[h.names[i]] = backing[i : i+1 : i+1]
	}
}

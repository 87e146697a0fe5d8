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

// defaultStripHeaders are the identity headers of other proxies that
// services migrating from them may still read (oauth2-proxy's
// X-Auth-Request-* and X-Forwarded-User family, Apache's and Authelia's
// Remote-User family). Exact names where a family shares its prefix with
// headers that forward-auth needs (X-Forwarded-For, -Uri, ...).
var defaultStripHeaders = []string{
	"X-Auth-Request-*",
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups",
	"X-Forwarded-Preferred-Username", "X-Forwarded-Access-Token",
	"X-Remote-User", "X-Remote-Email", "X-Remote-Groups", "X-Remote-Name",
	"Remote-User", "Remote-Email", "Remote-Groups", "Remote-Name",
}

// identityHeaders holds the identity header names for one prefix and knows
// how to remove any spelling of them, and of the other proxies' identity
// headers, from a request.
type identityHeaders struct {
	names [numSlots]string
	// fold is the prefix folded the way a backend might fold it: lower case
	// with '_' read as '-'.
	fold string
	// foreignExact are the strip_headers names, folded, indexed by length
	// so that a header is compared with the names of its length only;
	// foreignPrefix are the prefixes of its "Prefix-*" patterns, folded.
	foreignExact  [][]string
	foreignPrefix []string
	// foreignFirst marks the bytes a foreign header name can begin with, in
	// any spelling, so that most headers are passed over with one lookup.
	foreignFirst [256]bool
}

// newIdentityHeaders returns the headers of prefix, and of strip: header
// names and "Prefix-*" patterns that Config.Validate accepted.
func newIdentityHeaders(prefix string, strip []string) identityHeaders {
	prefix = http.CanonicalHeaderKey(prefix)
	var h identityHeaders
	for i, s := range identitySuffixes {
		h.names[i] = http.CanonicalHeaderKey(prefix + s)
	}
	h.fold = foldHeader(prefix)
	for _, s := range strip {
		f, pattern := strings.CutSuffix(foldHeader(s), "*")
		if f == "" {
			continue
		}
		if pattern {
			h.foreignPrefix = append(h.foreignPrefix, f)
		} else {
			for len(h.foreignExact) <= len(f) {
				h.foreignExact = append(h.foreignExact, nil)
			}
			h.foreignExact[len(f)] = append(h.foreignExact[len(f)], f)
		}
		c := f[0]
		h.foreignFirst[c] = true
		switch {
		case 'a' <= c && c <= 'z':
			h.foreignFirst[c-('a'-'A')] = true
		case c == '-':
			h.foreignFirst['_'] = true
		}
	}
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
	return foldedHasPrefix(name, h.fold)
}

// foldedHasPrefix reports whether name, folded, starts with fold, which is
// folded already, without allocating.
func foldedHasPrefix(name, fold string) bool {
	if len(name) < len(fold) {
		return false
	}
	for i := 0; i < len(fold); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != fold[i] {
			return false
		}
	}
	return true
}

// isForeign reports whether name, folded, is one of the strip_headers
// names or starts with one of its prefixes.
func (h *identityHeaders) isForeign(name string) bool {
	if name == "" || !h.foreignFirst[name[0]] {
		return false
	}
	if len(name) < len(h.foreignExact) {
		for _, f := range h.foreignExact[len(name)] {
			if foldedHasPrefix(name, f) {
				return true
			}
		}
	}
	for _, f := range h.foreignPrefix {
		if foldedHasPrefix(name, f) {
			return true
		}
	}
	return false
}

// strip deletes every header whose name folds into the identity prefix or
// a strip_headers entry: any case, '_' for '-', any number of repeats.
func (h *identityHeaders) strip(hdr http.Header) {
	for k := range hdr {
		if h.hasFoldedPrefix(k) || h.isForeign(k) {
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

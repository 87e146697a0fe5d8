package proxy

import (
	"io"
	"net/http"
	"net/url"
	"strings"
)

// serveForwardAuth answers an auth subrequest from a gateway. The original
// request is described by
//
//   - X-Forwarded-Method, X-Forwarded-Host, X-Forwarded-Uri (Traefik, Caddy),
//   - X-Original-Method, X-Original-URI (nginx auth_request, as configured in
//     deploy/nginx), with the host from X-Forwarded-Host or Host, or
//   - the request itself with Path "<forward_auth.path>/<original path>"
//     (Envoy ext_authz with path_prefix), which carries the original method
//     and Host.
//
// These are believed only from trusted_proxies. The answer is 200 with the
// full identity header set, 401 or 403 for auth outcomes, 5xx for
// authgate's own failures; never a redirect, never a read of the body.
func (h *handler) serveForwardAuth(w http.ResponseWriter, r *http.Request, out *outcome) {
	req, err := h.originalRequest(r)
	if err != nil {
		out.status, out.err = statusFor(err), err
		// Gateways treat anything but 2xx, 401 and 403 as an error of
		// their own, so a request we refuse to read is a 403 here.
		if out.status == http.StatusBadRequest {
			out.status = http.StatusForbidden
		}
		writeAuthError(w, out.status, err)
		return
	}
	p, ok := h.decide(r.Context(), r.Header, req, out)
	if out.status == http.StatusBadRequest {
		out.status = http.StatusForbidden // as above: gateways take 2xx, 401, 403
	}
	if out.status != http.StatusOK {
		writeAuthError(w, out.status, out.err)
		return
	}
	vals := identityValues(&p, ok)
	hdr := w.Header()
	if err := h.setAssertion(hdr, &p, ok, &vals, out.route, true); err != nil {
		out.status, out.err = http.StatusInternalServerError, err
		writeAuthError(w, out.status, err)
		return
	}
	h.ident.set(hdr, &vals, true)
	if p.legacyWarn {
		// For the gateway to copy to the client's response.
		h.routes[out.route].legacy.setWarning(hdr)
	}
	hdr["Cache-Control"] = noStore
	hdr["Content-Type"] = textPlain
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "ok\n")
}

// originalRequest reads the method, host and canonical path of the request
// the gateway is asking about. A gateway passes the client's own headers
// along, so a client may add a second header family (X-Original-URI next to
// Traefik's X-Forwarded-Uri, say): when the families, or repeats of one
// header, disagree, the request is refused rather than guessed at.
func (h *handler) originalRequest(r *http.Request) (request, error) {
	if !h.peerTrusted(r) {
		return request{}, errUntrustedPeer
	}
	hdr := r.Header
	method, ok := agree(hdr, identityValue, "X-Forwarded-Method", "X-Original-Method")
	if !ok {
		return request{}, errConflictingOriginal
	}
	rawPath, ok := agree(hdr, uriPath, "X-Forwarded-Uri", "X-Original-Uri", "X-Original-Url")
	if !ok {
		return request{}, errConflictingOriginal
	}
	host, ok := agree(hdr, identityValue, "X-Forwarded-Host")
	if !ok {
		return request{}, errConflictingOriginal
	}
	if host == "" {
		host = r.Host
	}
	if rawPath == "" {
		if _, present := hdr["X-Forwarded-Uri"]; present || len(hdr["X-Original-Uri"]) > 0 || len(hdr["X-Original-Url"]) > 0 {
			// Present but unreadable (a fragment, a bad URL).
			return request{}, errAmbiguousPath
		}
		// Envoy: the original path follows the forward-auth path, and the
		// subrequest carries the original method.
		rest, found := strings.CutPrefix(r.URL.EscapedPath(), h.faPath)
		if !found || !strings.HasPrefix(rest, "/") {
			return request{}, errNoOriginalURI
		}
		rawPath = rest
		if method == "" {
			method = r.Method
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	return gatewayRequest(host, method, rawPath)
}

// gatewayRequest checks the method and the escaped path of a request that a
// gateway asks about (forward-auth, ext_authz) and canonicalises the path.
func gatewayRequest(host, method, rawPath string) (request, error) {
	if !methodOK(method) {
		return request{}, errBadRequest
	}
	// The gateway forwards the path as the client wrote it, and authgate
	// cannot rewrite it: a path that a backend might resolve differently
	// from authgate (dot segments, empty segments) is refused.
	if hasDotOrEmptySegment(rawPath) {
		return request{}, errAmbiguousPath
	}
	p, err := canonicalPath(rawPath)
	if err != nil {
		return request{}, err
	}
	return request{host: host, method: method, path: p}, nil
}

// agree returns the one value that every present header of names carries
// (after norm), "" when none is present, and false when they differ.
func agree(hdr http.Header, norm func(string) string, names ...string) (string, bool) {
	var v string
	for _, n := range names {
		for _, raw := range hdr[n] {
			if raw == "" {
				continue
			}
			got := norm(raw)
			if got == "" {
				return "", false
			}
			if v != "" && got != v {
				return "", false
			}
			v = got
		}
	}
	return v, true
}

func identityValue(s string) string { return s }

// uriPath returns the escaped path of a request URI or absolute URL, ""
// when it cannot be read (a fragment, a bad URL).
func uriPath(uri string) string {
	if strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://") {
		u, err := url.Parse(uri)
		if err != nil || u.Fragment != "" {
			return ""
		}
		p := u.EscapedPath()
		if p == "" {
			p = "/"
		}
		return p
	}
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		if uri[i] == '#' {
			return ""
		}
		uri = uri[:i]
	}
	return uri
}

// hasDotOrEmptySegment reports whether an escaped path has "", "." or ".."
// segments, literal or percent-encoded (a trailing slash is fine). It runs
// on every forward-auth request, so it walks the segments in place.
func hasDotOrEmptySegment(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false // canonicalPath refuses it
	}
	rest := p[1:]
	for {
		seg, after, more := strings.Cut(rest, "/")
		if (more || seg != "") && dotOrEmpty(seg) {
			return true
		}
		if !more {
			return false
		}
		rest = after
	}
}

// dotOrEmpty reports whether a path segment is "", "." or "..", literal or
// percent-encoded in either case.
func dotOrEmpty(s string) bool {
	switch s {
	case "", ".", "..":
		return true
	}
	for _, d := range [...]string{"%2e", "%2e%2e", ".%2e", "%2e."} {
		if strings.EqualFold(s, d) {
			return true
		}
	}
	return false
}

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
func (h *Handler) serveForwardAuth(w http.ResponseWriter, r *http.Request, out *outcome) {
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
	id, ok := h.decide(r, req, out)
	if out.status != http.StatusOK {
		writeAuthError(w, out.status, out.err)
		return
	}
	vals := identityValues(&id, ok)
	hdr := w.Header()
	h.ident.set(hdr, &vals, true)
	hdr["Cache-Control"] = noStore
	hdr["Content-Type"] = textPlain
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "ok\n")
}

// originalRequest reads the method, host and canonical path of the request
// the gateway is asking about.
func (h *Handler) originalRequest(r *http.Request) (request, error) {
	if !h.peerTrusted(r) {
		return request{}, errUntrustedPeer
	}
	hdr := r.Header
	method := first(hdr, "X-Forwarded-Method", "X-Original-Method")
	uri := first(hdr, "X-Forwarded-Uri", "X-Original-Uri")
	host := first(hdr, "X-Forwarded-Host")
	if host == "" {
		host = r.Host
	}
	var rawPath string
	if uri == "" {
		// Envoy: the original path follows the forward-auth path.
		rest, ok := strings.CutPrefix(r.URL.EscapedPath(), h.faPath)
		if !ok || !strings.HasPrefix(rest, "/") {
			return request{}, errNoOriginalURI
		}
		rawPath = rest
		if method == "" {
			method = r.Method
		}
	} else {
		if method == "" {
			method = http.MethodGet
		}
		rawPath = uri
		if i := strings.IndexAny(rawPath, "?#"); i >= 0 {
			if rawPath[i] == '#' {
				return request{}, errAmbiguousPath
			}
			rawPath = rawPath[:i]
		}
		if strings.HasPrefix(rawPath, "http://") || strings.HasPrefix(rawPath, "https://") {
			u, err := url.Parse(rawPath)
			if err != nil {
				return request{}, errAmbiguousPath
			}
			rawPath = u.EscapedPath()
		}
	}
	if !methodOK(method) {
		return request{}, errBadRequest
	}
	p, err := canonicalPath(rawPath)
	if err != nil {
		return request{}, err
	}
	return request{host: host, method: method, path: p}, nil
}

// first returns the first non-empty value of the named headers.
func first(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h[n]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	return ""
}

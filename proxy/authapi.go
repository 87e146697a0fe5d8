package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// mounted is what the Handler tells a mounted handler about a request, and
// what that handler tells it back for the access log.
type mounted struct {
	clientIP netip.Addr
	userID   string
	reason   string
}

type mountedKey struct{}

// ClientIP is the address of the client a request is from. For a request
// the Handler passed to a mounted handler (WithAuthAPI) it is what the
// Handler found: the TCP peer, or the client that a trusted proxy names in
// X-Forwarded-For. For any other request it is the TCP peer.
func ClientIP(r *http.Request) netip.Addr {
	if m, ok := r.Context().Value(mountedKey{}).(*mounted); ok {
		return m.clientIP
	}
	return peerAddr(r)
}

// ReportOutcome tells the Handler, for its access log, which platform
// user a mounted handler's request was about ("" if none) and, when it
// failed, a short fixed reason (an error code, never a value from the
// request). For any other request it does nothing.
func ReportOutcome(r *http.Request, userID, reason string) {
	if m, ok := r.Context().Value(mountedKey{}).(*mounted); ok {
		m.userID, m.reason = userID, reason
	}
}

// reportedError is a mounted handler's reason, as the outcome's error.
type reportedError string

func (e reportedError) Error() string { return string(e) }

// serveAuthAPI hands a request under the auth API's prefix to the mounted
// handler. The identity headers were stripped and the request id set
// before; the status, user and reason come back for the access log and
// metrics.
func (h *handler) serveAuthAPI(w http.ResponseWriter, r *http.Request, out *outcome) {
	m := &mounted{clientIP: h.clientIP(r)}
	r = r.WithContext(context.WithValue(r.Context(), mountedKey{}, m))
	sw := &statusWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
	h.authAPI.ServeHTTP(sw, r)
	out.status = sw.status
	if out.status == 0 {
		out.status = http.StatusOK
	}
	out.userID = m.userID
	if m.reason != "" {
		out.err = reportedError(m.reason)
	}
}

// checkAuthPath refuses an auth API prefix that is not canonical or that
// overlaps another endpoint, which would then shadow it.
func (h *handler) checkAuthPath() error {
	if h.authAPI == nil {
		h.authPath = ""
		return nil
	}
	if err := checkEndpointPath(h.authPath); err != nil {
		return fmt.Errorf("auth api prefix: %w", err)
	}
	for _, other := range []string{h.faPath, h.apiPath} {
		if other != "" && (overlaps(h.authPath, other) || overlaps(other, h.authPath)) {
			return fmt.Errorf("auth api prefix: %q overlaps %q", h.authPath, other)
		}
	}
	return nil
}

// overlaps reports whether a is p or a path under it.
func overlaps(a, p string) bool { return a == p || strings.HasPrefix(a, p+"/") }

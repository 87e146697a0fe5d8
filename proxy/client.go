package proxy

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientIP is the address of the client a request is from: the TCP peer,
// or, when the peer is a trusted proxy, the nearest address in
// X-Forwarded-For that is not itself a trusted proxy. Entries left of that
// one were written by the client and are not believed. The zero Addr means
// the peer address could not be read.
func (h *handler) clientIP(r *http.Request) netip.Addr {
	addr := peerAddr(r)
	if !addr.IsValid() || !h.trustedAddr(addr) {
		return addr
	}
	xff := r.Header["X-Forwarded-For"]
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			j := strings.LastIndexByte(v, ',')
			hop := strings.TrimSpace(v[j+1:])
			v = v[:max(j, 0)]
			a, err := netip.ParseAddr(hop)
			if err != nil {
				// Garbage in the chain: nothing left of it can be
				// trusted, and the last hop that can is the client.
				return addr
			}
			addr = a.Unmap()
			if !h.trustedAddr(addr) {
				return addr
			}
		}
	}
	return addr
}

// peerAddr is the TCP peer's address, or the zero Addr when RemoteAddr
// cannot be read.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// trustedAddr reports whether a is in TrustedProxies.
func (h *handler) trustedAddr(a netip.Addr) bool {
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

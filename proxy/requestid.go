package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// requestIDs hands out request ids: a random per-process prefix and a
// counter, which is unique enough for log correlation and costs one small
// allocation, unlike a random UUID per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

// get returns incoming when it is a plausible id set by a proxy in front
// (letters, digits and -_.: up to 128 bytes, so it cannot inject log lines),
// else a fresh id.
func (g *requestIDs) get(incoming string) string {
	if validRequestID(incoming) {
		return incoming
	}
	var buf [40]byte
	b := append(buf[:0], g.prefix...)
	b = strconv.AppendUint(b, g.n.Add(1), 10)
	return string(b)
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

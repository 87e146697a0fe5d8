package proxy

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
)

// echoHandler is the development upstream behind upstream "builtin:echo":
// it answers with the method, path and headers it received, so that the
// identity headers authgate set can be seen with curl. It never runs unless
// configured.
type echoHandler struct{}

func (echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := map[string]string{}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "Authorization" || k == "Cookie" {
			hdr[k] = "(redacted)"
			continue
		}
		hdr[k] = strings.Join(r.Header[k], ", ")
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "headers": hdr})
}

package proxy

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzIdentityHeaders sends requests with arbitrary extra header lines, as
// the server's own parser reads them off the wire, through the whole
// pipeline to the echo upstream. Whatever a client adds, the identity
// headers the upstream sees are exactly the ones authgate derives from the
// token: never a client's value, never a second spelling of one, and none
// of the other proxies' identity headers (defaultStripHeaders).
func FuzzIdentityHeaders(f *testing.F) {
	for _, s := range []string{
		"X-User-Id: admin\r\n",
		"x-user-id: admin\r\nX-USER-ID: admin\r\n",
		"X_User_Id: admin\r\nx_user-type: admin\r\n",
		"X-User-Type: admin\r\nX-User-Type: user\r\n",
		"X-User-Federation: active\r\nX-User-Token-Balance: 1000000\r\n",
		"Connection: X-User-Id\r\nX-User-Id: admin\r\n",
		"Forwarded: for=198.51.100.1;x-user-id=admin\r\n",
		"X-User-: x\r\nX-User: y\r\nX-Userid: z\r\n",
		"X-Forwarded-User: admin\r\nX-Original-URI: /admin\r\n",
		"Cookie: __session=x.y.z\r\n",
		"X-Auth-Request-User: admin\r\nx_auth_request_email: a@example.test\r\n",
		"X-Forwarded-Email: a@example.test\r\nX-Forwarded-Groups: admin\r\nX_Forwarded_Preferred_Username: admin\r\n",
		"X-Remote-User: admin\r\nRemote-User: admin\r\nREMOTE_USER: admin\r\nRemote-Groups: admin\r\n",
		"Connection: X-Auth-Request-User\r\nX-Auth-Request-User: admin\r\n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	h := newHandler(f, testConfig(upstreamEcho))
	tok := token(f, "u-1", func(c map[string]any) { c["user_type"] = "member" })

	// serve returns the status and, when the echo upstream answered, the
	// headers it saw.
	serve := func(t *testing.T, lines string, authed bool) (int, map[string]string, bool) {
		// Without a token, a public route: the upstream must see no
		// identity header at all.
		raw := "GET /public/x HTTP/1.1\r\nHost: svc\r\n"
		if authed {
			raw = "GET /x HTTP/1.1\r\nHost: svc\r\nAuthorization: Bearer " + tok + "\r\n"
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + lines + "\r\n")))
		if err != nil {
			return 0, nil, false // the server would answer 400 itself
		}
		r.RemoteAddr = "203.0.113.9:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			return w.Code, nil, true
		}
		var echo struct {
			Headers map[string]string `json:"headers"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &echo); err != nil {
			t.Fatalf("echo body: %v\n%s", err, w.Body)
		}
		return w.Code, echo.Headers, true
	}
	identity := func(hdr map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range hdr {
			if strings.HasPrefix(strings.ReplaceAll(strings.ToLower(k), "_", "-"), "x-user-") {
				out[k] = v
			}
		}
		return out
	}

	f.Fuzz(func(t *testing.T, lines string, authed bool) {
		_, got, ok := serve(t, lines, authed)
		if !ok || got == nil {
			return // unparseable, or refused: the upstream saw nothing
		}
		_, want, _ := serve(t, "", authed)
		if authed && len(identity(want)) == 0 {
			t.Fatal("baseline request carried no identity: the property would hold vacuously")
		}
		for k := range got {
			if isForeignIdentity(k) {
				t.Fatalf("upstream saw %s: %q, another proxy's identity header", k, got[k])
			}
		}
		gotID, wantID := identity(got), identity(want)
		if len(gotID) != len(wantID) {
			t.Fatalf("upstream saw identity headers %v, want exactly %v", gotID, wantID)
		}
		for k, v := range wantID {
			if gotID[k] != v {
				t.Fatalf("upstream saw %s: %q, want authgate's %q (all: %v)", k, gotID[k], v, gotID)
			}
		}
	})
}

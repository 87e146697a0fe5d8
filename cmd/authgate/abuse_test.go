package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHostileInput sends the running binary requests built to be expensive
// or confusing: oversized headers, tokens of nothing but dots, deeply nested
// JSON, bytes that are not UTF-8. Each is refused with a 4xx status (403
// in forward-auth mode, which refuses what it cannot judge), none
// reaches the upstream, and authgate keeps serving.
func TestHostileInput(t *testing.T) {
	app := &upstreamRecorder{}
	upstream := httptest.NewServer(app)
	t.Cleanup(upstream.Close)
	ag := startAuthgate(t, fmt.Sprintf(`
server:
  public:
    addr: "127.0.0.1:0"
  admin:
    addr: "127.0.0.1:0"
log:
  format: json
upstream: %q
trusted_proxies: ["127.0.0.1/32"]
routes:
  - name: public
    path: /public/
    access: public
  - name: app
    path: /
verify:
  legacy:
    enabled: true
    secret_files: [%q]
`, upstream.URL, writeTestSecret(t)))

	b64 := base64.RawURLEncoding.EncodeToString
	nested := b64([]byte(`{"alg":"HS256"}`)) + "." + b64([]byte(`{"sub":`+strings.Repeat("[", 2800)+strings.Repeat("]", 2800)+`}`)) + ".c2ln"
	tests := []struct {
		name string
		// request is the raw request line and headers, without the
		// final empty line.
		request    string
		wantStatus int
	}{
		{"1 MiB header", "GET / HTTP/1.1\r\nHost: app\r\nX-Pad: " + strings.Repeat("a", 1<<20), http.StatusRequestHeaderFieldsTooLarge},
		{"100000 dots as the token", "GET / HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer " + strings.Repeat(".", 100_000), http.StatusRequestHeaderFieldsTooLarge},
		{"60000 dots as the token", "GET / HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer " + strings.Repeat(".", 60_000), http.StatusUnauthorized},
		{"deeply nested JSON in a token", "GET / HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer " + nested, http.StatusUnauthorized},
		{"token that is not UTF-8", "GET / HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer \xff\xfe.\xc0\xae.\x80", http.StatusUnauthorized},
		{"path that is not UTF-8", "GET /public/\xff\xfe HTTP/1.1\r\nHost: app", http.StatusBadRequest},
		{"escaped path that is not UTF-8", "GET /public/%ff%fe HTTP/1.1\r\nHost: app", http.StatusBadRequest},
		{"overlong dot-dot", "GET /public/%c0%ae%c0%ae/admin HTTP/1.1\r\nHost: app", http.StatusBadRequest},
		{"forward-auth original URI not UTF-8", "GET /auth HTTP/1.1\r\nHost: app\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: app\r\nX-Forwarded-Uri: /public/\xff", http.StatusForbidden},
		{"many Authorization headers", "GET /public/x HTTP/1.1\r\nHost: app" + strings.Repeat("\r\nAuthorization: Bearer a.b.c", 1000), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, err := rawRequest(ag.public, tt.request)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d", status, tt.wantStatus)
			}
			if got := app.take(); len(got) > 0 {
				t.Errorf("the upstream received %d request(s), first %q", len(got), got[0].uri)
			}
		})
	}
	if status, err := rawRequest(ag.public, "GET /public/ok HTTP/1.1\r\nHost: app"); err != nil || status != http.StatusOK {
		t.Errorf("after the hostile requests, a plain one: status %d, err %v; want 200", status, err)
	}
	if ag.exited() {
		t.Fatalf("authgate exited:\n%s", ag.out)
	}
	if strings.Contains(ag.out.String(), "panic") {
		t.Errorf("authgate logged a panic:\n%s", ag.out)
	}
}

// rawRequest writes request (with the closing empty line added) on a new
// connection and returns the response status.
func rawRequest(addr, request string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = c.Write([]byte(request + "\r\nConnection: close\r\n\r\n")) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, fmt.Errorf("reading the response: %w", err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

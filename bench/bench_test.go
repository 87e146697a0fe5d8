package main

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name       string
		give       string
		wantStatus int
		wantErr    bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", 200, false},
		{"chunked", "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 401, false},
		{"no body", "HTTP/1.1 204 No Content\r\n\r\n", 204, false},
		{"no length", "HTTP/1.1 200 OK\r\n\r\nok", 0, true},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 200, true},
		{"garbage", "SSH-2.0-OpenSSH\r\n\r\n", 0, true},
		{"truncated", "HTTP/1.1 200 OK\r\nContent-Len", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Twice in a row: the first answer must be consumed exactly.
			br := bufio.NewReader(strings.NewReader(tt.give + tt.give))
			for range 2 {
				got, err := readResponse(br)
				if (err != nil) != tt.wantErr || got != tt.wantStatus {
					t.Fatalf("readResponse(%q) = %d, %v; want %d, error %t", tt.give, got, err, tt.wantStatus, tt.wantErr)
				}
				if err != nil {
					return
				}
			}
		})
	}
}

func TestRunLoad(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		okHandler(w, r)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct {
		name         string
		giveToken    string
		wantRequests int64
		wantErrors   bool
	}{
		{"ok", "t", 50, false},
		{"refused", "x", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := fixed(httpGet(nil, "svc", "/", "Authorization", "Bearer "+tt.giveToken))
			got := runLoad(t.Context(), loadSpec{addr: addr, conns: 4, duration: 10 * time.Second, limit: 50, request: req, wantStatus: http.StatusOK})
			if got.requests != tt.wantRequests || (got.errors > 0) != tt.wantErrors {
				t.Errorf("runLoad() = %d requests, %d errors (%v); want %d, errors %t", got.requests, got.errors, got.firstErr, tt.wantRequests, tt.wantErrors)
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics([]byte(`# HELP authgate_cache_requests_total Cache lookups.
# TYPE authgate_cache_requests_total counter
authgate_cache_requests_total{cache="tokens",result="hit",tier="redis"} 7
authgate_cache_requests_total{cache="tokens",result="miss",tier="redis"} 2
authgate_cache_requests_total{cache="users",result="hit",tier="redis"} 5
authgate_db_pool_acquires_total 3
authgate_odd{path="a,b=\"c\""} 1
`))
	tests := []struct {
		name string
		give []string
		want float64
	}{
		{"all tiers", []string{"authgate_cache_requests_total", "cache", "tokens"}, 9},
		{"one result", []string{"authgate_cache_requests_total", "cache", "tokens", "result", "hit"}, 7},
		{"no labels", []string{"authgate_db_pool_acquires_total"}, 3},
		{"quoted comma", []string{"authgate_odd", "path", `a,b=\"c\"`}, 1},
		{"absent", []string{"authgate_nothing"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.sum(tt.give[0], tt.give[1:]...); got != tt.want {
				t.Errorf("sum(%q) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	cpu, err := parseStatCPU([]byte("4242 (auth gate) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 0 0"))
	if err != nil || cpu != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 3s", cpu, err)
	}
	hwm, rss, err := parseStatus([]byte("Name:\tauthgate\nVmHWM:\t   34924 kB\nVmRSS:\t   30000 kB\n"))
	if err != nil || hwm != 34924<<10 || rss != 30000<<10 {
		t.Errorf("parseStatus = %d, %d, %v", hwm, rss, err)
	}
}

func TestTokens(t *testing.T) {
	s, err := newSigner()
	if err != nil {
		t.Fatal(err)
	}
	toks, err := s.mintFirebase(8, func(i int) (string, time.Duration) { return "u", time.Duration(i) * time.Second })
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tok := range toks {
		if strings.Count(tok, ".") != 2 || seen[tok] {
			t.Fatalf("mintFirebase: %q is not a new compact JWS", tok)
		}
		seen[tok] = true
	}
}

// TestRS256Handler checks that the RS256 floor verifies: it answers 200
// only to a token the suite's key signed.
func TestRS256Handler(t *testing.T) {
	s, err := newSigner()
	if err != nil {
		t.Fatal(err)
	}
	other, err := newSigner()
	if err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(cert, s.cert, 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := readRSAKey(cert)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.firebase("u", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.firebase("u", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The same signing input with the other key's signature, and the
	// valid signature under another payload.
	dot := strings.LastIndexByte(tok, '.')
	otherSig := tok[:dot] + foreign[strings.LastIndexByte(foreign, '.'):]
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
	tests := []struct {
		name       string
		giveAuth   string
		wantStatus int
	}{
		{"valid", "Bearer " + tok, http.StatusOK},
		{"other key", "Bearer " + foreign, http.StatusUnauthorized},
		{"other key's signature", "Bearer " + otherSig, http.StatusUnauthorized},
		{"payload changed", "Bearer " + tampered, http.StatusUnauthorized},
		{"signature not base64url", "Bearer " + tok[:dot] + ".!!", http.StatusUnauthorized},
		{"no signature", "Bearer " + tok[:dot] + ".", http.StatusUnauthorized},
		{"no dot", "Bearer abc", http.StatusUnauthorized},
		{"no bearer", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/auth", nil)
			req.Header.Set("Authorization", tt.giveAuth)
			rec := httptest.NewRecorder()
			rs256Handler(key)(rec, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("rs256Handler(%.40q...) = %d, want %d", tt.giveAuth, rec.Code, tt.wantStatus)
			}
		})
	}
}

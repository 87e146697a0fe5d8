package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/verify/verifytest"
)

// syncBuffer is a strings.Builder safe for the dev command's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDev runs `authgate dev --firebase-emulator` in-process: the printed
// token and an emulator (unsigned) token both reach the echo upstream with
// identity headers, a spoofed header never does; it is ready without
// Google's keys.
func TestDev(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var stdout syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runDev(ctx, []string{"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--firebase-emulator", "127.0.0.1:9"}, nil, &stdout, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("authgate dev: %v", err)
		}
	})
	var out string
	addrRE := regexp.MustCompile(`public:\s+http://(\S+)`)
	tokRE := regexp.MustCompile(`TOKEN=(\S+)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if out = stdout.String(); tokRE.MatchString(out) {
			break
		}
	}
	m, tm := addrRE.FindStringSubmatch(out), tokRE.FindStringSubmatch(out)
	if m == nil || tm == nil {
		t.Fatalf("authgate dev printed no address or token:\n%s", out)
	}
	if !strings.Contains(out, "FIREBASE AUTH EMULATOR MODE") {
		t.Errorf("emulator mode not announced loudly:\n%s", out)
	}
	now := time.Now()
	emuTok := verifytest.Unsigned(t, map[string]any{"alg": "none"}, map[string]any{
		"iss": "https://securetoken.google.com/demo-authgate", "aud": "demo-authgate", "sub": "emu-uid",
		"iat": now.Add(-time.Minute).Unix(), "auth_time": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}, "")
	for _, c := range []struct {
		name, tok, want string
		status          int
	}{
		{"printed legacy token", tm[1], `"X-User-Id": "dev-user-1"`, 200},
		{"assertion", tm[1], `"X-User-Assertion": "ey`, 200},
		{"emulator token", emuTok, `"X-User-Firebase-Uid": "emu-uid"`, 200},
		{"no token, spoofed header", "", "", 401},
	} {
		req, _ := http.NewRequest("GET", "http://"+m[1]+"/api/hello", nil)
		req.Header.Set("X-User-Id", "spoofed")
		if c.tok != "" {
			req.Header.Set("Authorization", "Bearer "+c.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(body), c.want) || strings.Contains(string(body), "spoofed") {
			t.Errorf("%s: %d %s; want %d with %s and no spoofed value", c.name, resp.StatusCode, body, c.status, c.want)
		}
	}
	if !strings.Contains(out, "/.well-known/jwks.json") {
		t.Errorf("authgate dev does not say where the assertion keys are:\n%s", out)
	}
	// Emulator mode needs no Google keys: ready without reaching them.
	am := regexp.MustCompile(`admin: http://(\S+)/readyz`).FindStringSubmatch(out)
	if am == nil {
		t.Fatalf("authgate dev printed no admin address:\n%s", out)
	}
	resp, err := http.Get("http://" + am[1] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz = %d %s, want 200: emulator mode fetches no keys", resp.StatusCode, body)
	}
}

package main

// End-to-end test of deploy/traefik/dynamic.yaml in a real Traefik v3 in
// front of the built authgate. Traefik takes about 25 minutes to build
// here (scripts/build-traefik.sh), so CI does not run it; make
// e2e-traefik does, with TEST_REQUIRE_TRAEFIK=1.

import (
	"debug/buildinfo"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envRequireTraefik, set to 1 (as make e2e-traefik does), turns a missing
// traefik from a skip into a failure.
const envRequireTraefik = "TEST_REQUIRE_TRAEFIK"

const traefikExample = "../../deploy/traefik/dynamic.yaml"

// traefikDynamic turns deploy/traefik/dynamic.yaml into one that asks
// authgateAddr and proxies to app.
func traefikDynamic(t *testing.T, example, authgateAddr, app string) string {
	t.Helper()
	conf := example
	for _, r := range []struct{ old, new string }{
		{`"http://authgate:8080/auth"`, fmt.Sprintf("%q", "http://"+authgateAddr+"/auth")},
		{`"http://app:3000"`, fmt.Sprintf("%q", "http://"+app)},
	} {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("%s no longer contains %s; update traefikDynamic", traefikExample, r.old)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	return conf
}

// startTraefik runs bin with deploy/traefik/dynamic.yaml (file provider)
// and an entry point "websecure" on a loopback port, and returns that
// address once the router answers /public/x with ready (what app answers
// an anonymous request there).
func startTraefik(t *testing.T, bin, authgateAddr, app string, client *http.Client, ready int) string {
	t.Helper()
	example, err := os.ReadFile(traefikExample)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dynamic := filepath.Join(dir, "dynamic.yaml")
	e2eWriteFile(t, dynamic, traefikDynamic(t, string(example), authgateAddr, app))
	// The port is picked before Traefik binds it and another process may
	// take it in between, so a bind failure is retried with another port.
	for attempt := 1; ; attempt++ {
		listen := e2eFreeAddr(t)
		static := filepath.Join(dir, "traefik.yaml")
		// The entry point keeps Traefik's defaults, sanitizePath among
		// them, as the example asks.
		e2eWriteFile(t, static, fmt.Sprintf(`
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: INFO
entryPoints:
  websecure:
    address: %q
providers:
  file:
    filename: %q
    watch: false
`, listen, dynamic))
		cmd := exec.Command(bin, "--configFile="+static)
		cmd.Env = append(e2eEnv(), "HOME="+dir)
		p := startProcess(t, "traefik", cmd)
		deadline := time.Now().Add(15 * time.Second)
		for !p.exited() && time.Now().Before(deadline) {
			if c, err := net.DialTimeout("tcp", listen, 100*time.Millisecond); err == nil {
				_ = c.Close()
				// The file provider's routers arrive a moment after the
				// entry point opens; until then Traefik answers 404.
				waitGateway(t, client, p, "https://"+listen+"/public/x", ready, 15*time.Second)
				return listen
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !p.exited() {
			t.Fatalf("traefik is not accepting on %s after 15s\n%s", listen, p.out)
		}
		if attempt == 3 || !strings.Contains(p.out.String(), "address already in use") {
			t.Fatalf("traefik exited: %v\n%s", p.err, p.out)
		}
	}
}

// TestTraefikForwardAuth runs deploy/traefik/dynamic.yaml in a real
// Traefik in front of the built authgate (configs/forward-auth.yaml) and
// checks what the application behind Traefik receives: authgate's identity
// headers on allowed requests, never a client's, and nothing at all on
// denied ones.
func TestTraefikForwardAuth(t *testing.T) {
	traefikBin := findGateway(t, "traefik", envRequireTraefik, "scripts/build-traefik.sh (about 25 minutes)")
	if bi, err := buildinfo.ReadFile(traefikBin); err == nil {
		t.Logf("%s: built with %s", traefikBin, bi.GoVersion)
	}
	if out, err := exec.Command(traefikBin, "version").CombinedOutput(); err == nil {
		t.Logf("traefik version:\n%s", out)
	}
	app := &upstreamRecorder{}
	upstream := httptest.NewServer(app)
	t.Cleanup(upstream.Close)
	ag := startForwardAuthgate(t)
	client := gatewayClient(t)
	addr := startTraefik(t, traefikBin, ag.public, upstream.Listener.Addr().String(), client, http.StatusOK)
	app.take()

	tok := newGatewayTokens(t)
	tests := commonGatewayTests(tok)
	// Traefik resolves dot segments before asking authgate and before
	// proxying (sanitizePath), so authgate judges the path the application
	// receives.
	tests = append(tests,
		gatewayTest{
			name:        "dot segments into admin",
			givePath:    "/public/../admin",
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		gatewayTest{
			name:        "dot segments into admin with a user token",
			givePath:    "/public/../admin",
			giveHeaders: [][2]string{bearer(tok.user)},
			wantStatus:  http.StatusForbidden,
		},
		gatewayTest{
			name:       "dot segments out of admin into public",
			givePath:   "/admin/../public/x",
			wantStatus: http.StatusOK,
			wantUser:   "-",
			wantURI:    "/public/x",
		},
		gatewayTest{
			name:        "dot segments with an admin token",
			givePath:    "/public/./../admin/users",
			giveHeaders: [][2]string{bearer(tok.admin)},
			wantStatus:  http.StatusOK,
			wantUser:    "bob",
			wantType:    "admin",
			wantURI:     "/admin/users",
		},
		gatewayTest{
			name:        "encoded dot segments into admin",
			givePath:    "/public/%2e%2e/admin",
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		gatewayTest{
			name:       "empty and dot segments into public",
			givePath:   "/public//./x",
			wantStatus: http.StatusOK,
			wantUser:   "-",
			wantURI:    "/public/x",
		},
		// An encoded slash is passed on as it is; authgate refuses it
		// rather than guess how the application splits the path.
		gatewayTest{
			name:        "encoded slash into admin",
			givePath:    "/public/..%2fadmin",
			giveHeaders: [][2]string{bearer(tok.user)},
			wantStatus:  http.StatusForbidden,
		},
	)
	runGatewayTests(t, client, "https://"+addr, app, tests)
}

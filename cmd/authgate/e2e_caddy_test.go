package main

// End-to-end test of deploy/caddy/Caddyfile in a real Caddy in front of the
// built authgate. CI installs Caddy with scripts/install-caddy.sh and sets
// TEST_REQUIRE_CADDY=1.

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

// envRequireCaddy, set to 1 (as CI does), turns a missing caddy from a skip
// into a failure.
const envRequireCaddy = "TEST_REQUIRE_CADDY"

const caddyExample = "../../deploy/caddy/Caddyfile"

// caddyConf turns deploy/caddy/Caddyfile into one that serves plain HTTP on
// listen (loopback only) with no admin endpoint, and asks authgateAddr
// about requests for app.
func caddyConf(t *testing.T, example, listen, authgateAddr, app string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	conf := example
	for _, r := range []struct{ old, new string }{
		{exampleHost + " {\n", fmt.Sprintf("http://%s:%s {\n\tbind 127.0.0.1\n", exampleHost, port)},
		{"forward_auth authgate:8080 {", "forward_auth " + authgateAddr + " {"},
		{"reverse_proxy app:3000", "reverse_proxy " + app},
	} {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("%s no longer contains %q; update caddyConf", caddyExample, r.old)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	return "{\n\tadmin off\n\tauto_https off\n}\n\n" + conf
}

// startCaddy runs bin with deploy/caddy/Caddyfile in front of authgateAddr
// and app, and returns the address it listens on.
func startCaddy(t *testing.T, bin, authgateAddr, app string) string {
	t.Helper()
	example, err := os.ReadFile(caddyExample)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The port is picked before Caddy binds it and another process may take
	// it in between, so a bind failure is retried with another port.
	for attempt := 1; ; attempt++ {
		listen := e2eFreeAddr(t)
		path := filepath.Join(dir, "Caddyfile")
		e2eWriteFile(t, path, caddyConf(t, string(example), listen, authgateAddr, app))
		cmd := exec.Command(bin, "run", "--adapter", "caddyfile", "--config", path)
		// Caddy keeps certificates and state under $HOME or $XDG_*_HOME.
		cmd.Env = append(e2eEnv(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		p := startProcess(t, "caddy", cmd)
		deadline := time.Now().Add(10 * time.Second)
		for !p.exited() && time.Now().Before(deadline) {
			if c, err := net.DialTimeout("tcp", listen, 100*time.Millisecond); err == nil {
				_ = c.Close()
				return listen
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !p.exited() {
			t.Fatalf("caddy is not accepting on %s after 10s\n%s", listen, p.out)
		}
		if attempt == 3 || !strings.Contains(p.out.String(), "address already in use") {
			t.Fatalf("caddy exited: %v\n%s", p.err, p.out)
		}
	}
}

// TestCaddyForwardAuth runs deploy/caddy/Caddyfile in a real Caddy in front
// of the built authgate (configs/forward-auth.yaml) and checks what the
// application behind Caddy receives: authgate's identity headers on allowed
// requests, never a client's, and nothing at all on denied ones.
func TestCaddyForwardAuth(t *testing.T) {
	caddyBin := findGateway(t, "caddy", envRequireCaddy, "scripts/install-caddy.sh")
	// "caddy version" says "unknown" for a binary built by go install.
	if bi, err := buildinfo.ReadFile(caddyBin); err == nil {
		t.Logf("%s: caddy %s", caddyBin, bi.Main.Version)
	}
	app := &upstreamRecorder{}
	upstream := httptest.NewServer(app)
	t.Cleanup(upstream.Close)
	ag := startForwardAuthgate(t)
	addr := startCaddy(t, caddyBin, ag.public, upstream.Listener.Addr().String())

	tests := commonGatewayTests(newGatewayTokens(t))
	// The Caddyfile refuses dot segments and empty segments, decoded or
	// not: Caddy passes the raw path on, so the application could resolve
	// it to another route than the one authgate judged.
	for _, p := range []string{
		"/public/../admin", "/public/%2e%2e/admin", "/public/..%2fadmin", "/admin/../public/x",
		"/public/./x", "/public//x", "//admin",
	} {
		tests = append(tests, gatewayTest{name: "ambiguous path " + p, givePath: p, wantStatus: http.StatusBadRequest})
	}
	runGatewayTests(t, gatewayClient(t), "http://"+addr, app, tests)
}

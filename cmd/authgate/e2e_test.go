package main

// End-to-end tests of the built binary: authgate behind a real nginx using
// deploy/nginx/authgate.conf, graceful shutdown on SIGTERM, and check-config.
// They build the binary once per run and are skipped with -short.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/authgate/authgate/verify/verifytest"
)

// envRequireNginx, set to 1 (as CI does), turns a missing nginx from a skip
// into a failure. Test-only variables stay clear of the AUTHGATE_ prefix: the
// binary refuses an AUTHGATE_* variable that names no configuration key.
const envRequireNginx = "TEST_REQUIRE_NGINX"

// Paths from this package's directory, where go test runs.
const (
	nginxExample        = "../../deploy/nginx/authgate.conf"
	forwardAuthExample  = "../../configs/forward-auth.yaml"
	referenceExample    = "../../configs/authgate.yaml"
	kubernetesConfigMap = "../../deploy/kubernetes/configmap.yaml"
)

// spoofedValue is the value of every identity header a test client sends; no
// upstream may ever see it.
const spoofedValue = "spoofed-admin"

var e2eBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// TestMain removes the binary that authgateBinary built, once every test
// has run.
func TestMain(m *testing.M) {
	code := m.Run()
	if e2eBuild.dir != "" {
		_ = os.RemoveAll(e2eBuild.dir)
	}
	os.Exit(code)
}

// authgateBinary builds cmd/authgate once per test run and returns its path.
func authgateBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binary; skipped with -short")
	}
	e2eBuild.once.Do(func() {
		e2eBuild.dir, e2eBuild.err = os.MkdirTemp("", "authgate-e2e-")
		if e2eBuild.err != nil {
			return
		}
		e2eBuild.path = filepath.Join(e2eBuild.dir, "authgate")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-tags", "disable_grpc_modules", "-o", e2eBuild.path, ".").CombinedOutput()
		if err != nil {
			e2eBuild.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if e2eBuild.err != nil {
		t.Fatal(e2eBuild.err)
	}
	return e2eBuild.path
}

// e2eEnv is the test's environment without AUTHGATE_* variables, which
// would change the configuration under test, and without
// FIREBASE_AUTH_EMULATOR_HOST, which CI sets for the emulator tests and
// authgate refuses outside emulator mode, plus extra.
func e2eEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) && !strings.HasPrefix(kv, "FIREBASE_AUTH_EMULATOR_HOST=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// e2eOutput collects a child's stdout and stderr and spots authgate's
// "listening" log line.
type e2eOutput struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	scanned   int
	listening chan [3]string // public, admin, ext_authz_grpc ("" when off)
}

func newE2EOutput() *e2eOutput { return &e2eOutput{listening: make(chan [3]string, 1)} }

func (o *e2eOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	for {
		rest := o.buf.Bytes()[o.scanned:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return len(p), nil
		}
		o.scanned += i + 1
		var line struct {
			Msg    string `json:"msg"`
			Public string `json:"public_addr"`
			Admin  string `json:"admin_addr"`
			GRPC   string `json:"ext_authz_grpc_addr"`
		}
		if json.Unmarshal(rest[:i], &line) == nil && line.Msg == "listening" {
			select {
			case o.listening <- [3]string{line.Public, line.Admin, line.GRPC}:
			default:
			}
		}
	}
}

func (o *e2eOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// e2eProcess is a started child process.
type e2eProcess struct {
	name string
	cmd  *exec.Cmd
	out  *e2eOutput
	done chan struct{}
	err  error // from Wait; read only after done is closed
}

// startProcess runs cmd and, at cleanup, stops it with SIGTERM (SIGKILL if it
// lingers) and shows its output if the test failed.
func startProcess(t *testing.T, name string, cmd *exec.Cmd) *e2eProcess {
	t.Helper()
	p := &e2eProcess{name: name, cmd: cmd, out: newE2EOutput(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	return p
}

func (p *e2eProcess) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// e2eAuthgate is a running authgate and its bound addresses.
type e2eAuthgate struct {
	*e2eProcess
	public, admin string
	extAuthz      string // the ext_authz gRPC listener, "" when off
}

// startAuthgate runs "authgate serve" with the configuration in cfg (YAML)
// and waits until /readyz answers 200.
func startAuthgate(t *testing.T, cfg string) *e2eAuthgate {
	t.Helper()
	path := filepath.Join(t.TempDir(), "authgate.yaml")
	e2eWriteFile(t, path, cfg)
	return startAuthgateFile(t, path)
}

// startAuthgateFile is startAuthgate with the configuration file at path.
func startAuthgateFile(t *testing.T, path string) *e2eAuthgate {
	t.Helper()
	return startAuthgateEnv(t, path)
}

// startAuthgateEnv is startAuthgateFile with extra environment variables.
func startAuthgateEnv(t *testing.T, path string, env ...string) *e2eAuthgate {
	t.Helper()
	bin := authgateBinary(t)
	cmd := exec.Command(bin, "serve", "--config", path)
	cmd.Env = e2eEnv(env...)
	p := startProcess(t, "authgate", cmd)
	var addrs [3]string
	select {
	case addrs = <-p.out.listening:
	case <-p.done:
		t.Fatalf("authgate exited before listening: %v\n%s", p.err, p.out)
	case <-time.After(10 * time.Second):
		t.Fatalf("authgate did not log \"listening\" within 10s\n%s", p.out)
	}
	ag := &e2eAuthgate{e2eProcess: p, public: addrs[0], admin: addrs[1], extAuthz: addrs[2]}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	pollUntil(t, 5*time.Second, "authgate /readyz", func() bool {
		resp, err := client.Get("http://" + ag.admin + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return ag
}

// pollUntil calls ok until it returns true, failing the test after d.
func pollUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready after %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func e2eWriteFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeTestSecret writes verifytest.Secret to a file the way a Kubernetes
// Secret mount would (with a trailing newline) and returns its path.
func writeTestSecret(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "legacy-hs256")
	e2eWriteFile(t, path, verifytest.Secret+"\n")
	return path
}

// upstreamRecorder is an upstream that records what it receives.
type upstreamRecorder struct {
	mu   sync.Mutex
	reqs []upstreamRequest
}

type upstreamRequest struct {
	uri    string
	header http.Header
}

func (rec *upstreamRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, upstreamRequest{uri: r.RequestURI, header: r.Header.Clone()})
	rec.mu.Unlock()
	_, _ = io.WriteString(w, "upstream ok\n")
}

// take returns the requests received since the last call.
func (rec *upstreamRecorder) take() []upstreamRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.reqs
	rec.reqs = nil
	return out
}

// findNginx returns the nginx binary, or skips the test (fails it when
// TEST_REQUIRE_NGINX=1) when there is none with the auth_request module.
func findNginx(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		t.Helper()
		if os.Getenv(envRequireNginx) == "1" {
			t.Fatalf("%s, and %s=1 requires it (apt-get install nginx-light)", why, envRequireNginx)
		}
		t.Skipf("%s; install nginx (apt-get install nginx-light) or set %s=1 to make this a failure", why, envRequireNginx)
	}
	path, err := exec.LookPath("nginx")
	if err != nil {
		// Debian installs it in /usr/sbin, which is not on every user's PATH.
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			missing("nginx is not on PATH")
		}
		path = "/usr/sbin/nginx"
	}
	out, err := exec.Command(path, "-V").CombinedOutput()
	if err != nil {
		missing(fmt.Sprintf("%s -V: %v", path, err))
	}
	if !bytes.Contains(out, []byte("--with-http_auth_request_module")) {
		missing(path + " is built without the auth_request module")
	}
	return path
}

// e2eFreeAddr returns a loopback address with a port that was free a moment
// ago.
func e2eFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// nginxConf turns deploy/nginx/authgate.conf into a configuration that runs
// unprivileged inside dir: the example's addresses become the test's, and
// pid, logs and temporary files move into dir.
func nginxConf(t *testing.T, example, dir, listen, authgateAddr, app string) string {
	t.Helper()
	conf := regexp.MustCompile(`(?m)^(user|pid|error_log|worker_processes)\s[^;]*;[ \t]*\n`).ReplaceAllString(example, "")
	var temps strings.Builder
	temps.WriteString("http {\n")
	for _, m := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", m, filepath.Join(dir, m+"_temp"))
	}
	for _, r := range []struct{ old, new string }{
		{"127.0.0.1:8088", listen},
		{"127.0.0.1:8080", authgateAddr},
		{"127.0.0.1:3000", app},
		{"/var/log/nginx/", dir + "/"},
		{"http {\n", temps.String()},
	} {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("%s no longer contains %q; update nginxConf", nginxExample, r.old)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	head := fmt.Sprintf("worker_processes 1;\npid %s;\nerror_log stderr notice;\n", filepath.Join(dir, "nginx.pid"))
	if os.Geteuid() == 0 {
		// Workers of a root master run as nobody by default and could not
		// enter the test's 0700 temporary directory.
		head += "user root;\n"
	}
	return head + conf
}

// startNginx runs bin with deploy/nginx/authgate.conf in front of
// authgateAddr and app, and returns the address it listens on.
func startNginx(t *testing.T, bin, authgateAddr, app string) string {
	t.Helper()
	example, err := os.ReadFile(nginxExample)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The port is picked before nginx binds it and another process may take
	// it in between, so a bind failure is retried with another port.
	for attempt := 1; ; attempt++ {
		listen := e2eFreeAddr(t)
		path := filepath.Join(dir, "nginx.conf")
		e2eWriteFile(t, path, nginxConf(t, string(example), dir, listen, authgateAddr, app))
		p := startProcess(t, "nginx", exec.Command(bin, "-p", dir+"/", "-e", "stderr", "-c", path, "-g", "daemon off;"))
		deadline := time.Now().Add(5 * time.Second)
		for !p.exited() && time.Now().Before(deadline) {
			if c, err := net.DialTimeout("tcp", listen, 100*time.Millisecond); err == nil {
				_ = c.Close()
				return listen
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !p.exited() {
			t.Fatalf("nginx is not accepting on %s after 5s\n%s", listen, p.out)
		}
		if attempt == 3 || !strings.Contains(p.out.String(), "Address already in use") {
			t.Fatalf("nginx exited: %v\n%s", p.err, p.out)
		}
	}
}

func (p *e2eProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// foldHeaderName folds a header name the way backends do: lower case, "_" as "-".
func foldHeaderName(k string) string { return strings.ReplaceAll(strings.ToLower(k), "_", "-") }

// TestNginxAuthRequest runs deploy/nginx/authgate.conf in a real nginx in
// front of the built authgate and checks what the application behind nginx
// receives: authgate's identity headers on allowed requests, never a
// client's, and nothing at all on denied ones.
func TestNginxAuthRequest(t *testing.T) {
	nginxBin := findNginx(t) // skip before building anything
	app := &upstreamRecorder{}
	upstream := httptest.NewServer(app)
	t.Cleanup(upstream.Close)

	secretFile := writeTestSecret(t)
	ag := startAuthgate(t, fmt.Sprintf(`
server:
  public:
    addr: "127.0.0.1:0"
  admin:
    # Port 0 again: each listener gets its own free port, and validation
    # lets two port-0 addresses share a host.
    addr: "127.0.0.1:0"
  shutdown_grace: 5s
log:
  level: info
  format: json
upstream: ""
trusted_proxies: ["127.0.0.1/32"]
routes:
  - name: public
    path: /public/
    access: public
  - name: admin
    path: /admin
    require:
      user_type: [admin]
  - name: sunsetting
    path: /sunsetting
    legacy: warn
    legacy_deprecated: "2026-01-01T00:00:00Z"
    legacy_sunset: "2099-01-01T00:00:00Z"
  - name: retired
    path: /retired
    legacy: deny
  - name: default
    path: /
legacy_migration_url: https://developers.example.test/auth-v2
verify:
  legacy:
    enabled: true
    issuer: "https://auth.example.test"
    audience: platform
    secret_files: [%q]
`, secretFile))
	nginx := startNginx(t, nginxBin, ag.public, upstream.Listener.Addr().String())

	tok := newGatewayTokens(t)
	// nginx overrides the nine contract headers only: another name under
	// the prefix (X-User-Role) that a client sends reaches the upstream,
	// which nginx cannot strip by prefix. The other gateways' examples do
	// strip it; here it is left out of the spoofed set.
	with := func(hs ...[2]string) [][2]string {
		var out [][2]string
		for _, h := range spoofed(hs...) {
			if h[0] != "X-User-Role" {
				out = append(out, h)
			}
		}
		return out
	}

	tests := []gatewayTest{
		{
			name:        "valid token",
			givePath:    "/api/hello",
			giveHeaders: [][2]string{bearer(tok.user)},
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "valid token with spoofed identity headers",
			givePath:    "/api/hello",
			giveHeaders: with(bearer(tok.user)),
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "valid token with another proxy's identity headers",
			givePath:    "/api/hello",
			giveHeaders: foreignIdentity(tok.user),
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "valid token in the session cookie",
			givePath:    "/api/hello",
			giveHeaders: with([2]string{"Cookie", "theme=dark; __session=" + tok.user}),
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "spoofed X-User-Id without token",
			givePath:    "/api/hello",
			giveHeaders: [][2]string{{"X-User-Id", "admin"}, {"X-User-Type", "admin"}},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		{
			name:        "spoofed spellings without token",
			givePath:    "/api/hello",
			giveHeaders: with(),
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		{
			name:        "spoofed spellings on admin without token",
			givePath:    "/admin/users",
			giveHeaders: with(),
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		{
			name:        "token signed with another secret",
			givePath:    "/api/hello",
			giveHeaders: with(bearer(tok.forged)),
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:        "alg none token",
			givePath:    "/admin",
			giveHeaders: [][2]string{bearer(tok.none)},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:        "expired token",
			givePath:    "/api/hello",
			giveHeaders: [][2]string{bearer(tok.expired)},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:        "garbage token",
			givePath:    "/api/hello",
			giveHeaders: [][2]string{bearer("not-a-jwt")},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:       "public route without token",
			givePath:   "/public/x",
			wantStatus: http.StatusOK,
			wantUser:   "-",
		},
		{
			name:        "public route without token, spoofed headers",
			givePath:    "/public/x",
			giveHeaders: with(),
			wantStatus:  http.StatusOK,
			wantUser:    "-",
		},
		{
			name:        "public route with valid token",
			givePath:    "/public/x",
			giveHeaders: with(bearer(tok.user)),
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "public route with invalid token",
			givePath:    "/public/x",
			giveHeaders: [][2]string{bearer(tok.forged)},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:        "admin with a user token",
			givePath:    "/admin",
			giveHeaders: with(bearer(tok.user)),
			wantStatus:  http.StatusForbidden,
		},
		{
			name:        "admin with an admin token",
			givePath:    "/admin/users",
			giveHeaders: with(bearer(tok.admin)),
			wantStatus:  http.StatusOK,
			wantUser:    "bob",
			wantType:    "admin",
		},
		// nginx forwards the raw $request_uri; authgate cannot rewrite
		// it, so dot and empty segments are refused in forward-auth mode.
		{
			name:       "dot segments into admin",
			givePath:   "/public/../admin",
			wantStatus: http.StatusForbidden,
		},
		{
			name:       "encoded dot segments into admin",
			givePath:   "/public/%2e%2e/admin",
			wantStatus: http.StatusForbidden,
		},
		{
			name:       "encoded slash into admin",
			givePath:   "/public/..%2fadmin",
			wantStatus: http.StatusForbidden,
		},
		{
			name:       "dot segments out of admin into public",
			givePath:   "/admin/../public/x",
			wantStatus: http.StatusForbidden,
		},
		{
			name:       "repeated slashes",
			givePath:   "/public//x",
			wantStatus: http.StatusForbidden,
		},
		{
			name:        "query string passed on",
			givePath:    "/api/hello?q=%2F1&x=y",
			giveHeaders: [][2]string{bearer(tok.user)},
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "dot segments into admin with a user token",
			givePath:    "/public/../admin",
			giveHeaders: [][2]string{bearer(tok.user)},
			wantStatus:  http.StatusForbidden,
		},
		{
			// nginx passes the client's headers to the auth subrequest;
			// the example must keep the client from naming the path.
			name:        "client X-Forwarded-Uri names a public path",
			givePath:    "/admin",
			giveHeaders: [][2]string{{"X-Forwarded-Uri", "/public/x"}, {"X-Forwarded-Method", "GET"}},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		{
			name:        "legacy token on a retired route",
			givePath:    "/retired/x",
			giveHeaders: [][2]string{bearer(tok.user)},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token", error_description="legacy token no longer accepted"`,
		},
		{
			name:        "legacy token on a sunsetting route",
			givePath:    "/sunsetting/x",
			giveHeaders: [][2]string{bearer(tok.user)},
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "client X-Original-URI names a public path",
			givePath:    "/admin",
			giveHeaders: [][2]string{{"X-Original-URI", "/public/x"}, {"X-Original-Method", "GET"}},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	runGatewayTests(t, client, "http://"+nginx, app, tests)

	// The example copies the deprecation headers of a warn route's answer
	// to the client, and adds none elsewhere.
	for _, tt := range []struct {
		givePath string
		want     [3]string // Deprecation, Sunset, Link
	}{
		{"/sunsetting/x", [3]string{"@1767225600", "Thu, 01 Jan 2099 00:00:00 GMT", `<https://developers.example.test/auth-v2>; rel="deprecation"`}},
		{"/api/x", [3]string{}},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+nginx+tt.givePath, nil)
		req.Header.Set("Authorization", "Bearer "+tok.user)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		app.take()
		got := [3]string{resp.Header.Get("Deprecation"), resp.Header.Get("Sunset"), resp.Header.Get("Link")}
		if got != tt.want {
			t.Errorf("GET %s: Deprecation, Sunset, Link = %q, want %q", tt.givePath, got, tt.want)
		}
	}
}

// checkUpstream checks what the application received for one request:
// wantUser "" means it must not have been called, "-" that it was called
// without any identity, otherwise the X-User-Id it must have seen, at
// wantURI.
func checkUpstream(t *testing.T, got []upstreamRequest, wantURI, wantUser, wantType string) {
	t.Helper()
	if wantUser == "" {
		if len(got) != 0 {
			t.Fatalf("upstream called %d time(s) (%s), want never", len(got), got[0].uri)
		}
		return
	}
	if len(got) != 1 {
		t.Fatalf("upstream called %d time(s), want once", len(got))
	}
	if got[0].uri != wantURI {
		t.Errorf("upstream request URI %q, want %q", got[0].uri, wantURI)
	}
	h := got[0].header
	// Under any name: the client's identity headers, and other proxies'
	// (X-Auth-Request-User, Remote-User, ...), which the gateways clear.
	for k, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, spoofedValue) {
				t.Errorf("upstream received the client's %s: %q", k, v)
			}
		}
	}
	want := map[string]string{}
	if wantUser != "-" {
		want = map[string]string{
			"X-User-Id": wantUser, "X-User-Email": wantUser + "@example.test", "X-User-Email-Verified": "true",
			"X-User-Name": wantUser, "X-User-Type": wantType, "X-User-Provider": "legacy", "X-User-Federation": "disabled",
		}
	}
	// Unknown values (Firebase uid, token balance) are empty in authgate's
	// answer, so nginx sends no header at all.
	for _, k := range []string{
		"X-User-Id", "X-User-Firebase-Uid", "X-User-Email", "X-User-Email-Verified", "X-User-Name",
		"X-User-Type", "X-User-Token-Balance", "X-User-Provider", "X-User-Federation",
	} {
		var wantVals []string
		if v, ok := want[k]; ok {
			wantVals = []string{v}
		}
		if gotVals := h.Values(k); !slices.Equal(gotVals, wantVals) {
			t.Errorf("upstream %s = %q, want %q", k, gotVals, wantVals)
		}
	}
}

// TestServeGracefulShutdown sends SIGTERM while a proxied request is in
// flight: the listener closes at once, readiness reports draining, the
// request still completes, and the process exits 0.
func TestServeGracefulShutdown(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "slow ok\n")
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(unblock) // runs before upstream.Close, which waits for handlers

	ag := startAuthgate(t, fmt.Sprintf(`
server:
  public:
    addr: "127.0.0.1:0"
  admin:
    addr: "localhost:0"
  shutdown_grace: 10s
log:
  format: json
upstream: %q
routes:
  - name: all
    path: /
    access: public
verify:
  legacy:
    enabled: true
    secret_files: [%q]
`, upstream.URL, writeTestSecret(t)))

	type result struct {
		status int
		body   string
		err    error
	}
	resc := make(chan result, 1)
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	go func() {
		resp, err := client.Get("http://" + ag.public + "/slow")
		if err != nil {
			resc <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		resc <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	select {
	case <-arrived:
	case r := <-resc:
		t.Fatalf("request ended before reaching the upstream: %+v", r)
	case <-time.After(5 * time.Second):
		t.Fatal("request did not reach the upstream within 5s")
	}

	if err := ag.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The public listener closes while the request is still in flight.
	pollUntil(t, 5*time.Second, "public listener closed after SIGTERM", func() bool {
		c, err := net.DialTimeout("tcp", ag.public, 100*time.Millisecond)
		if err == nil {
			_ = c.Close() // an unused new connection would hold up Shutdown
			return false
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	// The admin listener stays up until the public one is drained, and says
	// so.
	resp, err := (&http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + ag.admin + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz while draining: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"draining"`)) {
		t.Errorf("GET /readyz while draining = %d %s, want 503 with status draining", resp.StatusCode, body)
	}
	select {
	case r := <-resc:
		t.Fatalf("in-flight request ended before the upstream answered: %+v", r)
	case <-ag.done:
		t.Fatalf("authgate exited with a request in flight: %v", ag.err)
	default:
	}

	unblock()
	select {
	case r := <-resc:
		if r.err != nil || r.status != http.StatusOK || r.body != "slow ok\n" {
			t.Errorf("in-flight request = %d %q, %v; want 200 \"slow ok\\n\"", r.status, r.body, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not finish within 5s of the upstream answering")
	}
	select {
	case <-ag.done:
	case <-time.After(10 * time.Second):
		t.Fatal("authgate did not exit within the 10s grace period")
	}
	if ag.err != nil {
		t.Errorf("authgate exited with %v, want exit status 0", ag.err)
	}
	if out := ag.out.String(); !strings.Contains(out, `"msg":"stopped"`) {
		t.Errorf("log has no \"stopped\" line:\n%s", out)
	}
}

// TestCheckConfig runs "authgate check-config" on broken configurations,
// which must name every bad key and exit 2, and on the example
// configurations, which must pass once their secret file exists.
func TestCheckConfig(t *testing.T) {
	bin := authgateBinary(t)
	dir := t.TempDir()
	secretFile := writeTestSecret(t)
	secretEnv := "AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secretFile

	bad := filepath.Join(dir, "bad.yaml")
	e2eWriteFile(t, bad, `
server:
  shutdown_grace: 0s
log:
  level: loud
trusted_proxies: [10.0.0.0/8, not-a-cidr]
routes:
  - name: api
    path: api
  - name: api
    path: /x
    access: sometimes
verify:
  legacy:
    enabled: true
    secrets: [too-short-secret-value]
`)
	unknown := filepath.Join(dir, "unknown.yaml")
	e2eWriteFile(t, unknown, "upstream: http://127.0.0.1:3000\nupstreams: [oops]\n")

	// The Kubernetes example carries its configuration inside a ConfigMap.
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	b, err := os.ReadFile(kubernetesConfigMap)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cm); err != nil || cm.Data["authgate.yaml"] == "" {
		t.Fatalf("%s: no data.authgate.yaml (%v)", kubernetesConfigMap, err)
	}
	k8s := filepath.Join(dir, "kubernetes.yaml")
	e2eWriteFile(t, k8s, cm.Data["authgate.yaml"])

	tests := []struct {
		name       string
		giveConfig string
		giveEnv    []string
		wantCode   int
		wantOut    []string // in stdout on success, stderr on failure
		wantNot    []string // never in the output
	}{
		{
			name:       "every bad key named",
			giveConfig: bad,
			wantCode:   2,
			wantOut: []string{
				"server.shutdown_grace:", "log.level:", "trusted_proxies[1]:",
				"routes[0].path:", "routes[1].name:", "routes[1].access:",
				"verify.legacy.secrets[0]:",
			},
			wantNot: []string{"too-short-secret-value", "trusted_proxies[0]"},
		},
		{
			name:       "unknown key",
			giveConfig: unknown,
			wantCode:   2,
			wantOut:    []string{"upstreams"},
		},
		{
			name:       "unknown environment variable",
			giveConfig: forwardAuthExample,
			giveEnv:    []string{secretEnv, "AUTHGATE_UPSTREEM=http://127.0.0.1:1"},
			wantCode:   2,
			wantOut:    []string{"AUTHGATE_UPSTREEM: no such configuration key"},
		},
		{
			name:       "secret given by environment too short",
			giveConfig: forwardAuthExample,
			giveEnv:    []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=", "AUTHGATE_VERIFY_LEGACY_SECRETS=short-env-secret"},
			wantCode:   2,
			wantOut:    []string{"verify.legacy.secrets[0]:"},
			wantNot:    []string{"short-env-secret"},
		},
		{
			name:       "forward-auth example",
			giveConfig: forwardAuthExample,
			giveEnv:    []string{secretEnv},
			wantOut:    []string{": ok"},
		},
		{
			name:       "reference example",
			giveConfig: referenceExample,
			giveEnv:    []string{secretEnv},
			wantOut:    []string{": ok"},
		},
		{
			name:       "kubernetes configmap example",
			giveConfig: k8s,
			giveEnv:    []string{secretEnv},
			wantOut:    []string{": ok"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "check-config", "--config", tt.giveConfig)
			cmd.Env = e2eEnv(tt.giveEnv...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			out := stdout.String()
			if tt.wantCode != 0 {
				out = stderr.String()
			}
			if code != tt.wantCode {
				t.Fatalf("check-config exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, &stdout, &stderr)
			}
			for _, s := range tt.wantOut {
				if !strings.Contains(out, s) {
					t.Errorf("check-config output does not name %q:\n%s", s, out)
				}
			}
			for _, s := range tt.wantNot {
				if strings.Contains(stdout.String()+stderr.String(), s) {
					t.Errorf("check-config output contains %q:\n%s%s", s, &stdout, &stderr)
				}
			}
		})
	}
}

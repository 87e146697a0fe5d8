package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authgate/authgate/internal/cache/cachetest"
	"github.com/authgate/authgate/verify/verifytest"
)

// The reload tests run the binary with a configuration file, change the
// file (or the files it names) and observe the result through the public
// listener and /metrics.

const (
	reloadProject = "demo-reload"
	// reloadSecretB is the secret that replaces verifytest.Secret.
	reloadSecretB = "the-rotated-legacy-secret-0123456789abcdef"
)

// reloadFixture is what a reload test's configuration refers to.
type reloadFixture struct {
	dir      string // where the configuration and secret live
	upstream string
	keys     *verifytest.KeyServer
	fbKey    *verifytest.Key
}

func newReloadFixture(t *testing.T) *reloadFixture {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "user=%s\n", r.Header.Get("X-User-Id"))
	}))
	t.Cleanup(up.Close)
	f := &reloadFixture{dir: t.TempDir(), upstream: up.URL, keys: verifytest.NewKeyServer(t), fbKey: verifytest.RSAKey(t, "fb-1")}
	f.keys.ServeX509(t, f.fbKey)
	return f
}

// start writes the legacy secret and a configuration with reload.watch_interval
// watch, and runs the binary on it.
func (f *reloadFixture) start(t *testing.T, watch string) (reloadConfig, string, *e2eAuthgate) {
	t.Helper()
	secretFile := filepath.Join(f.dir, "legacy-secret")
	e2eWriteFile(t, secretFile, verifytest.Secret+"\n")
	cfgPath := filepath.Join(f.dir, "authgate.yaml")
	cfg := reloadConfig{secretFile: secretFile, watch: watch}
	e2eWriteFile(t, cfgPath, f.yaml(cfg))
	return cfg, cfgPath, startAuthgateFile(t, cfgPath)
}

// reloadConfig is the configuration of the reload tests: a legacy issuer
// whose secret is in secretFile, Firebase when firebase is set, a route
// /reports (public when public is set), and more YAML at the end.
type reloadConfig struct {
	secretFile string
	firebase   bool
	public     bool
	watch      string // reload.watch_interval
	extra      string
}

func (f *reloadFixture) yaml(c reloadConfig) string {
	access := "authenticated"
	if c.public {
		access = "public"
	}
	return fmt.Sprintf(`server:
  public: {addr: "127.0.0.1:0"}
  admin: {addr: "127.0.0.1:0"}
  shutdown_grace: 5s
upstream: %s
log: {level: info, format: json, buffer_bytes: 0}
reload: {watch_interval: %s}
verify:
  legacy:
    enabled: true
    issuer: https://auth.example.test
    audience: platform
    secret_files: [%q]
  firebase:
    enabled: %t
    project_id: %s
    keys: {url: %q}
    session_cookies: {enabled: false}
routes:
  - {name: reports, path: /reports, access: %s}
  - {name: default, path: /}
%s`, f.upstream, c.watch, c.secretFile, c.firebase, reloadProject, f.keys.URL, access, c.extra)
}

// legacyToken signs a legacy token for sub with secret.
func legacyToken(t *testing.T, secret, sub string) string {
	t.Helper()
	return verifytest.HMAC(t, jose.HS256, []byte(secret), verifytest.Claims(sub, time.Now()), nil)
}

// getStatus sends GET path to authgate with token ("" for none).
func getStatus(t *testing.T, client *http.Client, ag *e2eAuthgate, path, token string) int {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+ag.public+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// metricValue reads the sample of series (name and labels, as exposed) on
// the admin listener's /metrics.
func metricValue(t *testing.T, ag *e2eAuthgate, series string) float64 {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + ag.admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

const (
	seriesGeneration = "authgate_config_generation"
	seriesReloadsOK  = `authgate_config_reloads_total{result="ok"}`
	seriesReloadsErr = `authgate_config_reloads_total{result="error"}`
)

// waitMetric waits until series reaches want.
func waitMetric(t *testing.T, ag *e2eAuthgate, series string, want float64) {
	t.Helper()
	pollUntil(t, 10*time.Second, fmt.Sprintf("%s = %v", series, want), func() bool {
		return metricValue(t, ag, series) == want
	})
}

// TestReloadSIGHUP makes a route public, rotates the legacy secret (in the
// named file) and changes a key that needs a restart, then sends SIGHUP:
// with watching off, only the signal reloads.
func TestReloadSIGHUP(t *testing.T) {
	f := newReloadFixture(t)
	cfg, cfgPath, ag := f.start(t, "0s")
	client := &http.Client{Timeout: 5 * time.Second}

	oldTok := legacyToken(t, verifytest.Secret, "alice")
	newTok := legacyToken(t, reloadSecretB, "bob")
	if got := getStatus(t, client, ag, "/reports", ""); got != http.StatusUnauthorized {
		t.Fatalf("GET /reports without a token before the reload = %d, want 401", got)
	}
	// Verified and cached under the old secret.
	if got := getStatus(t, client, ag, "/", oldTok); got != http.StatusOK {
		t.Fatalf("GET / with the old secret's token before the reload = %d, want 200", got)
	}

	cfg.public = true
	cfg.extra = "" // keys below
	e2eWriteFile(t, cfgPath, strings.Replace(f.yaml(cfg), "shutdown_grace: 5s", "shutdown_grace: 6s", 1))
	e2eWriteFile(t, cfg.secretFile, reloadSecretB+"\n")
	if got := metricValue(t, ag, seriesGeneration); got != 1 {
		t.Fatalf("%s before SIGHUP = %v, want 1 (watching is off)", seriesGeneration, got)
	}
	if err := ag.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, ag, seriesGeneration, 2)

	tests := []struct {
		name       string
		givePath   string
		giveToken  string
		wantStatus int
	}{
		{name: "route made public", givePath: "/reports", wantStatus: http.StatusOK},
		{name: "retired secret's cached token", givePath: "/", giveToken: oldTok, wantStatus: http.StatusUnauthorized},
		{name: "new secret's token", givePath: "/", giveToken: newTok, wantStatus: http.StatusOK},
		{name: "other routes unchanged", givePath: "/", wantStatus: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := getStatus(t, client, ag, tt.givePath, tt.giveToken); got != tt.wantStatus {
				t.Errorf("GET %s = %d, want %d", tt.givePath, got, tt.wantStatus)
			}
		})
	}
	if got := metricValue(t, ag, seriesReloadsOK); got != 1 {
		t.Errorf("%s = %v, want 1", seriesReloadsOK, got)
	}
	if out := ag.out.String(); !strings.Contains(out, "need a restart") || !strings.Contains(out, `"server.shutdown_grace"`) {
		t.Errorf("log has no restart warning naming server.shutdown_grace:\n%s", out)
	}
}

// kubeMount lays out a directory the way kubelet mounts a ConfigMap or
// Secret: files are symlinks through ..data to a timestamped directory,
// and an update swaps ..data at once.
type kubeMount struct {
	t   *testing.T
	dir string
	n   int
}

// update writes files into a new timestamped directory and swaps ..data
// to it, as kubelet's atomic writer does.
func (m *kubeMount) update(files map[string]string) {
	m.t.Helper()
	m.n++
	ts := fmt.Sprintf("..2026_12_04_08_00_%02d.%d", m.n, m.n)
	if err := os.Mkdir(filepath.Join(m.dir, ts), 0o755); err != nil {
		m.t.Fatal(err)
	}
	for name, content := range files {
		e2eWriteFile(m.t, filepath.Join(m.dir, ts, name), content)
		link := filepath.Join(m.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				m.t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(m.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		m.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, "..data")); err != nil {
		m.t.Fatal(err)
	}
}

// TestReloadKubernetesMount removes the Firebase issuer through a
// ConfigMap-style symlink swap, which the file watch picks up.
func TestReloadKubernetesMount(t *testing.T) {
	f := newReloadFixture(t)
	m := &kubeMount{t: t, dir: f.dir}
	secretFile := filepath.Join(f.dir, "legacy-secret")
	cfg := reloadConfig{secretFile: secretFile, firebase: true, watch: "100ms"}
	m.update(map[string]string{"authgate.yaml": f.yaml(cfg), "legacy-secret": verifytest.Secret + "\n"})
	ag := startAuthgateFile(t, filepath.Join(f.dir, "authgate.yaml"))
	client := &http.Client{Timeout: 5 * time.Second}

	fbTok := f.fbKey.Sign(t, verifytest.FirebaseClaims(reloadProject, "fb-alice", time.Now()), nil)
	legacyTok := legacyToken(t, verifytest.Secret, "alice")
	for name, tok := range map[string]string{"firebase": fbTok, "legacy": legacyTok} {
		if got := getStatus(t, client, ag, "/", tok); got != http.StatusOK {
			t.Fatalf("GET / with a %s token before the reload = %d, want 200", name, got)
		}
	}

	cfg.firebase = false
	m.update(map[string]string{"authgate.yaml": f.yaml(cfg), "legacy-secret": verifytest.Secret + "\n"})
	waitMetric(t, ag, seriesGeneration, 2)
	if got := getStatus(t, client, ag, "/", fbTok); got != http.StatusUnauthorized {
		t.Errorf("GET / with the removed issuer's cached token = %d, want 401", got)
	}
	if got := getStatus(t, client, ag, "/", legacyTok); got != http.StatusOK {
		t.Errorf("GET / with a legacy token after the reload = %d, want 200", got)
	}

	// Only the Secret changes: its content, through the same swap.
	m.update(map[string]string{"authgate.yaml": f.yaml(cfg), "legacy-secret": reloadSecretB + "\n"})
	waitMetric(t, ag, seriesGeneration, 3)
	if got := getStatus(t, client, ag, "/", legacyTok); got != http.StatusUnauthorized {
		t.Errorf("GET / with the retired secret's token = %d, want 401", got)
	}
}

// TestReloadBrokenFile writes an invalid configuration: the running one
// keeps serving, readiness stays, the error is counted and logged with its
// key; fixing the file then reloads.
func TestReloadBrokenFile(t *testing.T) {
	f := newReloadFixture(t)
	cfg, cfgPath, ag := f.start(t, "100ms")
	client := &http.Client{Timeout: 5 * time.Second}
	tok := legacyToken(t, verifytest.Secret, "alice")

	cfg.public = true
	e2eWriteFile(t, cfgPath, f.yaml(cfg)+"trusted_proxies: [not-a-cidr]\n")
	waitMetric(t, ag, seriesReloadsErr, 1)
	if got := metricValue(t, ag, seriesGeneration); got != 1 {
		t.Errorf("%s after a broken file = %v, want 1", seriesGeneration, got)
	}
	if got := getStatus(t, client, ag, "/reports", ""); got != http.StatusUnauthorized {
		t.Errorf("GET /reports without a token = %d, want 401 (the running configuration)", got)
	}
	if got := getStatus(t, client, ag, "/", tok); got != http.StatusOK {
		t.Errorf("GET / with a token = %d, want 200", got)
	}
	resp, err := client.Get("http://" + ag.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz after a broken file = %d, want 200", resp.StatusCode)
	}
	var failed string
	for _, line := range strings.Split(ag.out.String(), "\n") {
		if strings.Contains(line, "configuration reload failed") {
			failed = line
		}
	}
	if !strings.Contains(failed, "trusted_proxies") {
		t.Errorf("reload failure line = %q, want one naming trusted_proxies", failed)
	}

	// A secret file that goes missing is an error too.
	missing := cfg
	missing.secretFile = filepath.Join(f.dir, "no-such-secret")
	e2eWriteFile(t, cfgPath, f.yaml(missing))
	waitMetric(t, ag, seriesReloadsErr, 2)

	e2eWriteFile(t, cfgPath, f.yaml(cfg))
	waitMetric(t, ag, seriesGeneration, 2)
	if got := getStatus(t, client, ag, "/reports", ""); got != http.StatusOK {
		t.Errorf("GET /reports without a token after the fix = %d, want 200", got)
	}
}

// TestReloadUnderLoad reloads again and again while clients send requests
// with a token valid under every configuration: none may fail.
func TestReloadUnderLoad(t *testing.T) {
	f := newReloadFixture(t)
	cfg, cfgPath, ag := f.start(t, "0s")
	tok := legacyToken(t, verifytest.Secret, "alice")

	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+ag.public+"/reports", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}

	const reloads = 20
	for i := range reloads {
		c := cfg
		c.public = i%2 == 0
		// Alternate the log level and the route table's shape too.
		c.extra = fmt.Sprintf("  - {name: extra%d, path: /extra%d}\n", i, i)
		e2eWriteFile(t, cfgPath, strings.Replace(f.yaml(c), "level: info", []string{"level: debug", "level: info"}[i%2], 1))
		if err := ag.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitMetric(t, ag, seriesGeneration, float64(i+2))
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during %d reloads; first: %v", n, sent.Load(), reloads, firstFailure.Load())
	}
	if got := metricValue(t, ag, seriesReloadsOK); got != reloads {
		t.Errorf("%s = %v, want %d", seriesReloadsOK, got, reloads)
	}
	t.Logf("%d requests during %d reloads, 0 failed", sent.Load(), reloads)
}

// TestReloadSharedRedis runs two replicas sharing Redis, with their
// secret mounted at different paths: a replica that rotated the secret
// refuses a token that the other, still on the old secret, has just cached
// in Redis; once both run the same configuration they share again.
func TestReloadSharedRedis(t *testing.T) {
	rcfg, _ := cachetest.Redis(t, "cmd")
	f := newReloadFixture(t)
	redisYAML := fmt.Sprintf("cache:\n  redis: {addrs: [%q], db: %d, key_prefix: %q}\n", rcfg.Addrs[0], rcfg.DB, rcfg.KeyPrefix)
	replica := func(name string) (*e2eAuthgate, string, string) {
		dir := filepath.Join(f.dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		secretFile := filepath.Join(dir, "legacy-secret")
		e2eWriteFile(t, secretFile, verifytest.Secret+"\n")
		cfgPath := filepath.Join(dir, "authgate.yaml")
		e2eWriteFile(t, cfgPath, f.yaml(reloadConfig{secretFile: secretFile, watch: "100ms", extra: redisYAML}))
		return startAuthgateFile(t, cfgPath), secretFile, cfgPath
	}
	a, aSecret, _ := replica("a")
	b, bSecret, _ := replica("b")
	client := &http.Client{Timeout: 5 * time.Second}
	oldTok := legacyToken(t, verifytest.Secret, "alice")
	newTok := legacyToken(t, reloadSecretB, "bob")
	const legacyOK = `authgate_verify_total{provider="legacy",result="ok"}`

	e2eWriteFile(t, aSecret, reloadSecretB+"\n")
	waitMetric(t, a, seriesGeneration, 2)
	if got := getStatus(t, client, b, "/", oldTok); got != http.StatusOK {
		t.Fatalf("b (old secret): GET / with the old secret's token = %d, want 200", got)
	}
	if got := getStatus(t, client, a, "/", oldTok); got != http.StatusUnauthorized {
		t.Errorf("a (rotated): GET / with the old secret's token, cached in Redis by b = %d, want 401", got)
	}

	e2eWriteFile(t, bSecret, reloadSecretB+"\n")
	waitMetric(t, b, seriesGeneration, 2)
	if got := getStatus(t, client, a, "/", newTok); got != http.StatusOK {
		t.Fatalf("a: GET / with the new secret's token = %d, want 200", got)
	}
	before := metricValue(t, b, legacyOK)
	if got := getStatus(t, client, b, "/", newTok); got != http.StatusOK {
		t.Fatalf("b: GET / with the new secret's token = %d, want 200", got)
	}
	if got := metricValue(t, b, legacyOK); got != before {
		t.Errorf("b: %s went from %v to %v, want unchanged: a's verification, shared through Redis", legacyOK, before, got)
	}
}

// jwksKids returns the kids of the JWKS at url.
func jwksKids(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	slices.Sort(kids)
	return kids
}

// TestReloadAssertionKey replaces the assertion signing key in its file:
// both listeners publish the new key after the reload.
func TestReloadAssertionKey(t *testing.T) {
	f := newReloadFixture(t)
	secretFile := filepath.Join(f.dir, "legacy-secret")
	e2eWriteFile(t, secretFile, verifytest.Secret+"\n")
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyFile := writePEMKey(t, newKey())
	cfgPath := filepath.Join(f.dir, "authgate.yaml")
	e2eWriteFile(t, cfgPath, f.yaml(reloadConfig{secretFile: secretFile, watch: "100ms",
		extra: fmt.Sprintf("assertion: {enabled: true, issuer: https://authgate.example.test, key_files: [%q]}\n", keyFile)}))
	ag := startAuthgateFile(t, cfgPath)
	const path = "/.well-known/jwks.json"
	before := jwksKids(t, "http://"+ag.admin+path)
	if len(before) != 1 {
		t.Fatalf("JWKS kids before the reload = %q, want one", before)
	}

	rotated := writePEMKey(t, newKey())
	b, err := os.ReadFile(rotated)
	if err != nil {
		t.Fatal(err)
	}
	e2eWriteFile(t, keyFile, string(b))
	waitMetric(t, ag, seriesGeneration, 2)
	admin, public := jwksKids(t, "http://"+ag.admin+path), jwksKids(t, "http://"+ag.public+path)
	if len(admin) != 1 || admin[0] == before[0] {
		t.Errorf("admin JWKS kids after the reload = %q, want one other than %q", admin, before)
	}
	if !slices.Equal(public, admin) {
		t.Errorf("public JWKS kids = %q, admin's = %q, want the same", public, admin)
	}
}

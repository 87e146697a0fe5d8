package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/assertion"
)

// buildAuthgate builds cmd/authgate as the Makefile does (static,
// -trimpath) into dir.
func buildAuthgate(ctx context.Context, goTool, moduleDir, dir string) (string, error) {
	bin := filepath.Join(dir, "authgate")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-tags", "disable_grpc_modules", "-ldflags", "-s -w -X main.version=bench", "-o", bin, "./cmd/authgate")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/authgate: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot finds the directory of go.mod.
func moduleRoot(goTool string) (string, error) {
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the authgate module: run the suite from the repository (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

// agConfig is what differs between the authgate instances of the suite;
// everything else is the production configuration: JSON logs with the
// access log on (to a file), metrics, Firebase and legacy issuers,
// federation with PostgreSQL.
type agConfig struct {
	upstream    string
	localMaxTTL time.Duration
	pprof       bool
	noAccessLog bool
	redis       bool   // Redis as the shared tier
	publicAddr  string // default 127.0.0.1:0
	adminAddr   string
	// usageOff turns the usage telemetry off (usage.enabled: false); it is
	// on by default. usageFlush, when set, is its usage.flush_interval.
	usageOff   bool
	usageFlush time.Duration
	// assertionKey, when set, turns the signed identity assertion on with
	// this PEM key file.
	assertionKey string
}

// fixture holds what every authgate instance shares.
type fixture struct {
	bin         string
	dir         string
	keysURL     string
	secretFile  string
	databaseURL string
	schema      string
	redisAddr   string
	redisPrefix string
	logPipe     bool // authgate's output through a drained pipe, else straight to a file
}

func (f *fixture) yaml(c agConfig) string {
	pub, adm := cmpOr(c.publicAddr, "127.0.0.1:0"), cmpOr(c.adminAddr, "127.0.0.1:0")
	redisAddrs := "[]"
	if c.redis {
		redisAddrs = fmt.Sprintf("[%q]", f.redisAddr)
	}
	localMaxTTL := "0s"
	if c.localMaxTTL > 0 {
		localMaxTTL = c.localMaxTTL.String()
	}
	return fmt.Sprintf(`# authgate bench: the production configuration on loopback.
server:
  public:
    addr: %q
  admin:
    addr: %q
    pprof: %t
  shutdown_grace: 5s
log:
  level: info
  format: json
  access_log: %t
upstream: %q
trusted_proxies: ["127.0.0.1/32"]
routes:
  - name: health
    path: /healthz
    methods: [GET]
    access: public
  - name: admin
    path: /admin
    require:
      email_verified: true
      user_type: [admin]
  - name: default
    path: /
verify:
  legacy:
    enabled: true
    issuer: %q
    algorithms: [HS256]
    secret_files: [%q]
  firebase:
    enabled: true
    project_id: %q
    keys:
      url: %q
    session_cookies:
      enabled: true
      keys:
        url: %q
federation:
  enabled: true
  schema: %q
cache:
  local_max_ttl: %s
  redis:
    addrs: %s
    key_prefix: %q
`, pub, adm, c.pprof, !c.noAccessLog, c.upstream, legacyIssuer, f.secretFile, projectID, f.keysURL, f.keysURL,
		f.schema, localMaxTTL, redisAddrs, f.redisPrefix) + c.extraYAML()
}

// extraYAML is the part of the configuration that only some scenarios
// write; the others keep the defaults.
func (c agConfig) extraYAML() string {
	var b strings.Builder
	if c.usageOff || c.usageFlush > 0 {
		b.WriteString("usage:\n")
		if c.usageOff {
			b.WriteString("  enabled: false\n")
		}
		if c.usageFlush > 0 {
			fmt.Fprintf(&b, "  flush_interval: %s\n", c.usageFlush)
		}
	}
	if c.assertionKey != "" {
		fmt.Fprintf(&b, "assertion:\n  enabled: true\n  issuer: %q\n  audience: %q\n  key_files: [%q]\n", assertionIssuer, assertionAudience, c.assertionKey)
	}
	return b.String()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// env is the suite's environment without AUTHGATE_* variables (they would
// change the configuration under test) and FIREBASE_AUTH_EMULATOR_HOST
// (which authgate refuses outside emulator mode), plus the database URL.
func (f *fixture) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUTHGATE_") && !strings.HasPrefix(kv, "FIREBASE_AUTH_EMULATOR_HOST=") {
			env = append(env, kv)
		}
	}
	return append(env, "AUTHGATE_FEDERATION_DATABASE_URL="+f.databaseURL)
}

func (f *fixture) writeConfig(name string, c agConfig) (string, error) {
	path := filepath.Join(f.dir, name+".yaml")
	return path, os.WriteFile(path, []byte(f.yaml(c)), 0o600)
}

// migrate creates the suite's schema with "authgate migrate".
func (f *fixture) migrate(ctx context.Context) error {
	path, err := f.writeConfig("migrate", agConfig{})
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, f.bin, "migrate", "--config", path)
	cmd.Env = f.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("authgate migrate: %w\n%s", err, out)
	}
	return nil
}

// start runs "authgate serve" with c and waits until /readyz answers 200.
func (f *fixture) start(ctx context.Context, name string, c agConfig) (*proc, error) {
	path, err := f.writeConfig(name, c)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(f.bin, "serve", "--config", path)
	cmd.Env = f.env()
	p, err := startProc(ctx, "authgate "+name, cmd, filepath.Join(f.dir, name+".log"), f.logPipe)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, "http://"+p.admin+"/readyz", 10*time.Second, time.Millisecond); err != nil {
		p.stop()
		return nil, fmt.Errorf("authgate %s: %w\n%s", name, err, p.tail())
	}
	return p, nil
}

// readyClient polls /readyz: no keep-alive, so that each poll is what a
// kubelet probe does.
var readyClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// waitReady polls url every interval until it answers 200.
func waitReady(ctx context.Context, url string, timeout, interval time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		_, err := getURL(ctx, readyClient, url)
		if err == nil {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s: %v", errNotReady, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// cleanup drops the schema and deletes the suite's Redis keys.
func (f *fixture) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []string
	if conn, err := pgx.Connect(ctx, f.databaseURL); err != nil {
		errs = append(errs, err.Error())
	} else {
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{f.schema}.Sanitize()+" CASCADE"); err != nil {
			errs = append(errs, err.Error())
		}
		_ = conn.Close(ctx)
	}
	rdb := redis.NewClient(&redis.Options{Addr: f.redisAddr})
	defer rdb.Close()
	iter := rdb.Scan(ctx, 0, f.redisPrefix+"*", 1000).Iterator()
	var keys []string
	flush := func() {
		if len(keys) > 0 {
			if err := rdb.Del(ctx, keys...).Err(); err != nil {
				errs = append(errs, err.Error())
			}
			keys = keys[:0]
		}
	}
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			flush()
		}
	}
	flush()
	if err := iter.Err(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}

// checkServices fails early, with a hint, when PostgreSQL or Redis is not
// there.
func checkServices(ctx context.Context, databaseURL, redisAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("reach PostgreSQL at -database-url: %w (start it, or point TEST_DATABASE_URL at one)", err)
	}
	_ = conn.Close(ctx)
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, MaxRetries: -1})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("reach Redis at -redis %s: %w", redisAddr, err)
	}
	return nil
}

// insertUsers creates n legacy users (rows the old service would have
// made) and returns their ids.
func (f *fixture) insertUsers(ctx context.Context, n int) ([]string, error) {
	conn, err := pgx.Connect(ctx, f.databaseURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `INSERT INTO `+pgx.Identifier{f.schema, "users"}.Sanitize()+` (email, username)
		SELECT 'legacy-' || g || '@bench.test', 'legacy-' || g FROM generate_series(1, $1::int) g
		RETURNING id::text`, n)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("insert users: %w", err)
	}
	return ids, nil
}

// metrics is one scrape of authgate's /metrics.
type metrics []sample

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func scrape(ctx context.Context, admin string) (metrics, error) {
	b, err := getURL(ctx, http.DefaultClient, "http://"+admin+"/metrics")
	if err != nil {
		return nil, err
	}
	return parseMetrics(b), nil
}

// parseMetrics reads the Prometheus text format, enough for counters and
// gauges.
func parseMetrics(b []byte) metrics {
	var out metrics
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s := sample{name: line[:i], labels: map[string]string{}, value: v}
		if j := strings.IndexByte(s.name, '{'); j >= 0 && strings.HasSuffix(s.name, "}") {
			for _, kv := range splitLabels(s.name[j+1 : len(s.name)-1]) {
				if k, v, ok := strings.Cut(kv, "="); ok && len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					s.labels[k] = v[1 : len(v)-1] // escapes kept: no label the suite reads has any
				}
			}
			s.name = s.name[:j]
		}
		out = append(out, s)
	}
	return out
}

// splitLabels splits `a="x",b="y"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == ',' && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// sum adds the samples of name whose labels include every pair in kv
// (name, value, name, value, ...).
func (m metrics) sum(name string, kv ...string) float64 {
	var total float64
next:
	for _, s := range m {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		total += s.value
	}
	return total
}

// checkAssertion asks p about tok as a gateway would and verifies the
// assertion of the answer against p's JWKS, so that fa-assert measures an
// authgate that really signs.
func checkAssertion(ctx context.Context, p *proc, tok string) error {
	v, err := assertion.New(assertion.Config{
		JWKSURL: "http://" + p.public + "/.well-known/jwks.json",
		Issuer:  assertionIssuer, Audience: assertionAudience, Leeway: 5 * time.Second,
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.public+"/auth", nil)
	if err != nil {
		return err
	}
	req.Host = faHost
	for k, val := range map[string]string{
		"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": appHost,
		"X-Forwarded-Uri": appPath, "Authorization": "Bearer " + tok,
	} {
		req.Header.Set(k, val)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	resp.Body.Close()
	c, err := v.Verify(ctx, resp.Header.Get(assertion.DefaultHeader))
	if err != nil {
		return fmt.Errorf("%s: the answer's assertion (status %d): %w", p.name, resp.StatusCode, err)
	}
	if c.Subject == "" {
		return fmt.Errorf("%s: the assertion has no subject", p.name)
	}
	return nil
}

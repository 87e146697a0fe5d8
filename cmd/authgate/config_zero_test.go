package main

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/authgate/authgate/configs"
	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/internal/secret"
)

// everythingOn turns on every part whose keys are validated only when it
// is on, so that the zero of each key meets its check.
const everythingOn = `
upstream: http://127.0.0.1:3000
routes: [{name: default, path: /}]
verify:
  legacy:
    enabled: true
    issuer: https://auth.example.test
    algorithms: [HS256, RS256]
    secrets: [zero-test-secret-0123456789abcdef0123456789]
    jwks: {url: "http://127.0.0.1:1/jwks"}
  firebase:
    enabled: true
    project_id: demo-authgate
    revocation: {enabled: true}
federation:
  enabled: true
  database_url: postgres://authgate@127.0.0.1:1/platform
  worker: {enabled: true}
cache:
  redis: {addrs: ["127.0.0.1:6379"]}
tracing:
  enabled: true
auth_api:
  enabled: true
  web_api_key: zero-test-key
  legacy_passwords: {enabled: true}
`

// zeroRefused are the keys whose zero (0, 0s, false, "", []) has no
// meaning: check-config refuses it, naming the key, instead of running
// with a default. Every other key runs with its zero; the README's
// configuration table says what each zero means.
var zeroRefused = []string{
	"server.public.addr", "server.public.read_header_timeout", "server.public.read_timeout",
	"server.public.write_timeout", "server.public.idle_timeout", "server.public.max_header_bytes",
	"server.admin.addr", "server.admin.read_header_timeout", "server.admin.read_timeout",
	"server.admin.write_timeout", "server.admin.idle_timeout", "server.admin.max_header_bytes",
	"server.admin.check_timeout", "server.shutdown_grace",
	"log.level", "log.format", "log.flush_interval",
	"header_prefix", "forward_auth.path", "token_api.prefix", "token_api.rate_limit.max_keys",
	"transport.dial_timeout", "transport.tls_handshake_timeout", "transport.response_header_timeout",
	"transport.idle_conn_timeout", "transport.max_idle_conns_per_host",
	"ext_authz_grpc.max_recv_msg_size", "ext_authz_grpc.max_concurrent_streams", "ext_authz_grpc.timeout",
	"routes",
	"verify.legacy.algorithms", "verify.legacy.claims.user_id",
	"verify.legacy.secrets", "verify.legacy.jwks.fetch_timeout", "verify.legacy.jwks.default_max_age",
	"verify.firebase.project_id",
	"verify.firebase.keys.url", "verify.firebase.keys.fetch_timeout", "verify.firebase.keys.default_max_age",
	"verify.firebase.session_cookies.keys.url", "verify.firebase.session_cookies.keys.fetch_timeout",
	"verify.firebase.session_cookies.keys.default_max_age",
	"verify.max_token_bytes",
	"federation.database_url", "federation.schema", "federation.max_conns", "federation.acquire_timeout",
	"federation.query_timeout", "federation.last_login_max", "federation.idempotency_ttl", "federation.on_unavailable", "federation.on_email_conflict",
	"federation.worker.interval", "federation.worker.batch_size", "federation.worker.max_attempts",
	"federation.worker.backoff_base", "federation.worker.backoff_max",
	"cache.load_timeout", "cache.redis.failure_backoff_max", // below failure_backoff
	"cache.redis.dial_timeout", "cache.redis.read_timeout", "cache.redis.write_timeout",
	"tracing.service_name",
	"auth_api.prefix", "auth_api.web_api_key", "auth_api.identity_toolkit_url", "auth_api.secure_token_url",
	"auth_api.timeout", "auth_api.password.min_length", "auth_api.password.max_length",
	"auth_api.rate_limit.max_keys", "auth_api.legacy_passwords.column", "auth_api.legacy_passwords.format",
	"auth_api.legacy_passwords.cost",
	"usage.flush_interval",
}

// zeroYAML is the zero of v's type as the file and the environment write
// it.
func zeroYAML(v reflect.Value) string {
	switch {
	case v.Type() == reflect.TypeOf(time.Duration(0)):
		return "0s"
	case v.Kind() == reflect.Bool:
		return "false"
	case v.Kind() == reflect.Int, v.Kind() == reflect.Int64, v.Kind() == reflect.Float64:
		return "0"
	case v.Kind() == reflect.String:
		return `""`
	case v.Kind() == reflect.Slice:
		return "[]"
	}
	return "{}"
}

// withKey returns the YAML document base with path set to the YAML value
// val.
func withKey(t *testing.T, base, path, val string) string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(base), &doc); err != nil {
		t.Fatal(err)
	}
	var v yaml.Node
	if err := yaml.Unmarshal([]byte(val), &v); err != nil {
		t.Fatal(err)
	}
	setPath(doc.Content[0], strings.Split(path, "."), v.Content[0])
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// problemKeys returns the keys (or variables) that err's problems name.
func problemKeys(err error) []string {
	var keys []string
	for _, e := range configerr.List(err) {
		k, _, _ := strings.Cut(e.Error(), ":")
		k, _, _ = strings.Cut(k, " (") // AUTHGATE_X (key.path)
		k, _, _ = strings.Cut(k, "[")  // routes[0], secrets[1]
		keys = append(keys, k)
	}
	return keys
}

// TestZeroValues writes the zero of every configuration key, once in the
// file and once in its AUTHGATE_* variable, and checks that the zero is
// the value that runs, or that check-config refuses it naming the key.
func TestZeroValues(t *testing.T) {
	base := writeFile(t, "base.yaml", everythingOn)
	if _, err := loadConfig(base, nil); err != nil {
		t.Fatalf("the base configuration is invalid: %v", err)
	}
	refused := map[string]bool{}
	for _, k := range zeroRefused {
		refused[k] = true
	}
	probe := defaultConfig()
	for _, k := range envKeys(&probe) {
		zero := zeroYAML(k.v)
		envZero := strings.Trim(zero, `"`)
		for _, via := range []string{"yaml", "env"} {
			t.Run(k.path+"/"+via, func(t *testing.T) {
				path, env := base, []string(nil)
				if via == "yaml" {
					path = writeFile(t, "c.yaml", withKey(t, everythingOn, k.path, zero))
				} else {
					env = []string{k.name + "=" + envZero}
				}
				wantKey := k.path
				cfg, err := loadConfig(path, env)
				keys := problemKeys(err)
				if refused[k.path] {
					if !slices.Contains(keys, wantKey) {
						t.Errorf("zero %s: problems name %q, want %q", zero, keys, wantKey)
					}
					return
				}
				if slices.Contains(keys, wantKey) {
					t.Errorf("zero %s refused: %v", zero, err)
				}
				for _, got := range envKeys(&cfg) {
					if got.path == k.path && !got.v.IsZero() && !(got.v.Kind() == reflect.Slice && got.v.Len() == 0) {
						t.Errorf("zero %s runs as %v, want the zero", zero, got.v.Interface())
					}
				}
			})
		}
	}
}

// An empty AUTHGATE_* value is not a quiet zero: for a non-string key it
// is an error naming the variable; a string or list key is set empty.
func TestEnvEmptyValue(t *testing.T) {
	path := writeFile(t, "c.yaml", minimalConfig)
	tests := []struct {
		give    string
		wantErr bool
	}{
		{give: "AUTHGATE_FORWARD_AUTH_ENABLED", wantErr: true},
		{give: "AUTHGATE_LOG_BUFFER_BYTES", wantErr: true},
		{give: "AUTHGATE_VERIFY_LEGACY_LEEWAY", wantErr: true},
		{give: "AUTHGATE_TRACING_SAMPLE_RATIO", wantErr: true},
		{give: "AUTHGATE_ROUTES", wantErr: true},
		{give: "AUTHGATE_TOKEN_COOKIE"},
		{give: "AUTHGATE_TRUSTED_PROXIES"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			_, err := loadConfig(path, []string{tt.give + "=  "})
			if got := slices.Contains(problemKeys(err), tt.give); got != tt.wantErr {
				t.Errorf("loadConfig with %s empty: %v, want an error naming it: %t", tt.give, err, tt.wantErr)
			}
		})
	}
}

// configs/authgate.yaml lists every key, with its default.
func TestSampleListsEveryKeyWithDefault(t *testing.T) {
	b, err := configs.Files.ReadFile("authgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	// What the sample sets for its sidecar example, not as a default.
	example := map[string]bool{
		"upstream": true, "routes": true, "verify.legacy.enabled": true, "verify.legacy.issuer": true,
		"verify.legacy.secret_files": true,
	}
	sample := defaultConfig()
	if err := decodeYAML(b, &sample); err != nil {
		t.Fatalf("decode sample: %v", err)
	}
	defaults := defaultConfig()
	want := map[string]reflect.Value{}
	for _, k := range envKeys(&defaults) {
		want[k.path] = k.v
	}
	var missing, differ []string
	for _, k := range envKeys(&sample) {
		if !hasPath(doc.Content[0], strings.Split(k.path, ".")) {
			missing = append(missing, k.path)
			continue
		}
		if !example[k.path] && !sameValue(k.v, want[k.path]) {
			differ = append(differ, fmt.Sprintf("%s: %v, default %v", k.path, k.v.Interface(), want[k.path].Interface()))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("configs/authgate.yaml lacks %d keys:\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
	if len(differ) > 0 {
		t.Errorf("configs/authgate.yaml differs from DefaultConfig:\n  %s", strings.Join(differ, "\n  "))
	}
}

func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	// Routes hold slices that decode as nil or empty alike.
	return reflect.DeepEqual(a.Interface(), b.Interface()) || fmt.Sprint(a.Interface()) == fmt.Sprint(b.Interface())
}

// hasPath reports whether the mapping m has the nested keys path.
func hasPath(m *yaml.Node, path []string) bool {
	for i := 0; m.Kind == yaml.MappingNode && i < len(m.Content); i += 2 {
		if m.Content[i].Value == path[0] {
			return len(path) == 1 || hasPath(m.Content[i+1], path[1:])
		}
	}
	return false
}

// check-config --print shows what serve runs: it reads back as the same
// configuration, and never shows a secret.
func TestPrintConfig(t *testing.T) {
	secrets := map[string]string{
		"AUTHGATE_SERVER_ADMIN_API_SECRET":   "print-test-admin-secret-0123456789abcdef",
		"AUTHGATE_VERIFY_LEGACY_SECRETS":     "print-test-legacy-secret-0123456789abcdef",
		"AUTHGATE_FEDERATION_DATABASE_URL":   "postgres://authgate:print-test-db-pw@127.0.0.1:1/platform",
		"AUTHGATE_CACHE_REDIS_PASSWORD":      "print-test-redis-pw",
		"AUTHGATE_AUTH_API_WEB_API_KEY":      "print-test-web-api-key",
		"AUTHGATE_VERIFY_FIREBASE_LEEWAY":    "0s",
		"AUTHGATE_VERIFY_CACHE_NEGATIVE_TTL": "0s",
	}
	var env []string
	for k, v := range secrets {
		env = append(env, k+"="+v)
	}
	base := writeFile(t, "c.yaml", strings.Replace(everythingOn, "database_url: postgres://authgate@127.0.0.1:1/platform", "", 1))
	cfg, err := loadConfig(base, env)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	var out bytes.Buffer
	if code := run(t.Context(), []string{"check-config", "--config", base, "--print"}, env, &out, os.Stderr); code != nil {
		t.Fatalf("check-config --print: %v", code)
	}
	for k, v := range secrets {
		if strings.HasPrefix(v, "print-test") && strings.Contains(out.String(), v) {
			t.Errorf("--print shows the value of %s", k)
		}
	}
	if got := strings.Count(out.String(), secret.Redacted); got != 5 {
		t.Errorf("--print redacts %d values, want 5:\n%s", got, out.String())
	}
	// With the secrets put back, the printed file is the configuration.
	printed := defaultConfig()
	if err := decodeYAML(out.Bytes(), &printed); err != nil {
		t.Fatalf("decode printed: %v\n%s", err, out.String())
	}
	printed.Server.Admin.APISecret = cfg.Server.Admin.APISecret
	printed.Verify.Legacy.Secrets = cfg.Verify.Legacy.Secrets
	printed.Federation.DatabaseURL = cfg.Federation.DatabaseURL
	printed.Cache.Redis.Password = cfg.Cache.Redis.Password
	printed.AuthAPI.WebAPIKey = cfg.AuthAPI.WebAPIKey
	for _, pair := range [][2]*Config{{&printed, &cfg}} {
		a, b := envKeys(pair[0]), envKeys(pair[1])
		for i := range a {
			if !sameValue(a[i].v, b[i].v) {
				t.Errorf("printed %s = %v, want %v", a[i].path, a[i].v.Interface(), b[i].v.Interface())
			}
		}
	}
	if printed.Verify.Firebase.Leeway != 0 || printed.Verify.Cache.NegativeTTL != 0 {
		t.Errorf("printed leeway %s, negative_ttl %s, want 0s, 0s", printed.Verify.Firebase.Leeway, printed.Verify.Cache.NegativeTTL)
	}
}

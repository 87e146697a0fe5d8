package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/configerr"
	usagestats "github.com/authgate/authgate/internal/usage"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/proxy/authapi"
	"github.com/authgate/authgate/verify"
)

// envPrefix starts every environment variable that overrides a config key:
// the key path upper-cased with "_" between parts, so verify.legacy.secrets
// is AUTHGATE_VERIFY_LEGACY_SECRETS.
const envPrefix = "AUTHGATE_"

// Config is the whole configuration file.
type Config struct {
	// Server configures the two listeners and shutdown.
	Server ServerConfig `yaml:"server"`
	// Log configures logging.
	Log LogConfig `yaml:"log"`
	// The proxy's keys (upstream, routes, trusted_proxies, ...) sit at the
	// top level of the file.
	Proxy proxy.Config `yaml:",inline"`
	// Verify configures the token issuers.
	Verify verify.Config `yaml:"verify"`
	// Federation keeps the platform's PostgreSQL user table in step with
	// the tokens seen.
	Federation federation.Config `yaml:"federation"`
	// Cache configures the shared two-tier cache (in-process, then Redis)
	// that verified tokens and federation's user rows live in.
	Cache cache.Config `yaml:"cache"`
	// Tracing exports OpenTelemetry spans over OTLP/HTTP.
	Tracing TracingConfig `yaml:"tracing"`
	// AuthAPI serves the original service's /v1/auth endpoints
	// (register, login, refresh, logout, me). Off by default.
	AuthAPI authapi.Config `yaml:"auth_api"`
	// Usage counts which token provider authenticates requests, for the
	// migration report (GET /admin/migration) and metrics.
	Usage usagestats.Config `yaml:"usage"`
	// Reload configures how serve notices a changed configuration.
	Reload ReloadConfig `yaml:"reload"`

	// ignored are the keys of ignoredKeys that the file or the
	// environment set, in the order met, for serve to warn about.
	ignored []ignoredKey
}

// ignoredKey is a key of ignoredKeys that a configuration sets.
type ignoredKey struct {
	path  string // the key, or the variable and the key
	where string // "line N" of the file, or the variable
	why   string
}

// ReloadConfig configures configuration reloads. SIGHUP always reloads.
type ReloadConfig struct {
	// WatchInterval is how often the configuration file and every file it
	// names (secrets, PEM keys) are read to see whether their content
	// changed. A change reloads once it has held for one interval, so a
	// file caught half-written is not loaded. Reading through the path
	// follows a Kubernetes ConfigMap or Secret mount's symlink swap. 0
	// turns watching off (SIGHUP only). Default 5s; 0, or 100ms to 1h.
	WatchInterval time.Duration `yaml:"watch_interval"`
}

func (c ReloadConfig) validate() error {
	if d := c.WatchInterval; d != 0 && (d < 100*time.Millisecond || d > time.Hour) {
		return fmt.Errorf("watch_interval: %s is outside 100ms..1h (0 turns watching off)", d)
	}
	return nil
}

// TracingConfig turns OpenTelemetry tracing on. Where spans go (endpoint,
// headers, timeout) comes from the standard OTEL_EXPORTER_OTLP_* variables,
// read by the exporter itself.
type TracingConfig struct {
	// Enabled turns tracing on. Default false: no span is made.
	Enabled bool `yaml:"enabled"`
	// ServiceName is the service.name resource attribute; OTEL_SERVICE_NAME
	// overrides it. Default authgate.
	ServiceName string `yaml:"service_name"`
	// SampleRatio is the share of new traces recorded, 0 to 1; a request
	// whose client sent a trace follows the client's sampling decision.
	// Default 0.1.
	SampleRatio float64 `yaml:"sample_ratio"`
}

func (c TracingConfig) validate() error {
	var errs []error
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		errs = append(errs, fmt.Errorf("sample_ratio: %v is outside 0..1", c.SampleRatio))
	}
	if c.Enabled && c.ServiceName == "" {
		errs = append(errs, errors.New("service_name: must be set"))
	}
	return errors.Join(errs...)
}

// ServerConfig configures listeners and shutdown.
type ServerConfig struct {
	Public ListenerConfig `yaml:"public"`
	Admin  AdminConfig    `yaml:"admin"`
	// ShutdownGrace is how long in-flight requests may take to finish after
	// SIGTERM or SIGINT. Default 25s (Kubernetes waits 30s by default).
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// ShutdownDelay keeps accepting requests, with /readyz answering 503, for
	// this long after the signal so that load balancers notice first.
	// Default 0.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`
}

// ListenerConfig is one HTTP listener.
type ListenerConfig struct {
	Addr              string        `yaml:"addr"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response; WebSocket and event-stream
	// responses lift it for themselves.
	WriteTimeout   time.Duration `yaml:"write_timeout"`
	IdleTimeout    time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes int           `yaml:"max_header_bytes"`
}

// AdminConfig is the admin listener.
type AdminConfig struct {
	ListenerConfig    `yaml:",inline"`
	proxy.AdminConfig `yaml:",inline"`
}

// apiSecretKey is the key that sets the admin API secret, "" when none
// does.
func (c AdminConfig) apiSecretKey() string {
	switch {
	case c.APISecret != "":
		return "server.admin.api_secret"
	case c.APISecretFile != "":
		return "server.admin.api_secret_file"
	}
	return ""
}

// LogConfig configures zap.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json (default) or console.
	Format string `yaml:"format"`
	// AccessLog writes one line per request. Default true.
	AccessLog bool `yaml:"access_log"`
	// BufferBytes buffers log lines in memory and writes them in batches,
	// as nginx's access_log buffer= does: one write(2) per line is most of
	// what an access log costs. Lines at warn and above, start-up and
	// shutdown flush at once; a crash may lose up to FlushInterval of
	// access lines. 0 writes every line at once. Default 256 KiB.
	BufferBytes int `yaml:"buffer_bytes"`
	// FlushInterval bounds how long a buffered line waits. Default 1s.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// defaultConfig is the configuration before the file and environment apply.
func defaultConfig() Config {
	listener := func(addr string) ListenerConfig {
		return ListenerConfig{
			Addr:              addr,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
		}
	}
	return Config{
		Server: ServerConfig{
			Public:        listener(":8080"),
			Admin:         AdminConfig{ListenerConfig: listener(":9090"), AdminConfig: proxy.DefaultAdminConfig()},
			ShutdownGrace: 25 * time.Second,
		},
		Log:        LogConfig{Level: "info", Format: "json", AccessLog: true, BufferBytes: 256 << 10, FlushInterval: time.Second},
		Proxy:      proxy.DefaultConfig(),
		Verify:     verify.DefaultConfig(),
		Federation: federation.DefaultConfig(),
		Cache:      cache.DefaultConfig(),
		Tracing:    TracingConfig{ServiceName: "authgate", SampleRatio: 0.1},
		AuthAPI:    authapi.DefaultConfig(),
		Usage:      usagestats.DefaultConfig(),
		Reload:     ReloadConfig{WatchInterval: 5 * time.Second},
	}
}

// Validate reports every problem, each with its full key path.
func (c Config) Validate() error {
	var errs []error
	for _, l := range []struct {
		key string
		l   ListenerConfig
	}{{"server.public.", c.Server.Public}, {"server.admin.", c.Server.Admin.ListenerConfig}} {
		errs = append(errs, configerr.Prefix(l.key, l.l.validate()))
	}
	errs = append(errs, configerr.Prefix("server.admin.", c.Server.Admin.AdminConfig.Validate()))
	if sameListenAddr(c.Server.Public.Addr, c.Server.Admin.Addr) {
		errs = append(errs, errors.New("server.admin.addr: must differ from server.public.addr"))
	}
	if g := c.Proxy.ExtAuthzGRPC.Addr; g != "" {
		for _, other := range []struct{ key, addr string }{{"server.public.addr", c.Server.Public.Addr}, {"server.admin.addr", c.Server.Admin.Addr}} {
			if sameListenAddr(g, other.addr) {
				errs = append(errs, fmt.Errorf("ext_authz_grpc.addr: %q must differ from %s", g, other.key))
			}
		}
	}
	if c.Server.ShutdownGrace <= 0 {
		errs = append(errs, errors.New("server.shutdown_grace: must be positive"))
	}
	if c.Server.ShutdownDelay < 0 {
		errs = append(errs, errors.New("server.shutdown_delay: must not be negative"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not json or console", c.Log.Format))
	}
	if b := c.Log.BufferBytes; b != 0 && (b < 4<<10 || b > 16<<20) {
		errs = append(errs, fmt.Errorf("log.buffer_bytes: %d is outside 4096..16777216 (0 turns buffering off)", b))
	}
	if d := c.Log.FlushInterval; c.Log.BufferBytes != 0 && (d < 10*time.Millisecond || d > time.Minute) {
		errs = append(errs, fmt.Errorf("log.flush_interval: %s is outside 10ms..1m", d))
	}
	// The worker reads Firebase user records of verify.firebase.project_id.
	// The admin API is the user table's; it links accounts and retries
	// federations only with Firebase (those endpoints are 404 without).
	if c.Federation.Enabled && c.Federation.Worker.Enabled && !c.Verify.Firebase.Enabled {
		errs = append(errs, errors.New("federation.worker.enabled: needs verify.firebase.enabled, whose project's users it reads"))
	}
	if key := c.Server.Admin.apiSecretKey(); key != "" && !c.Federation.Enabled {
		errs = append(errs, fmt.Errorf("%s: the admin API manages the user table and needs federation.enabled", key))
	}
	errs = append(errs, c.authAPIProblems()...)
	errs = append(errs, c.Proxy.Validate(),
		configerr.Prefix("verify.", c.Verify.Validate()),
		configerr.Prefix("federation.", c.Federation.Validate()),
		configerr.Prefix("cache.", c.Cache.Validate()),
		configerr.Prefix("tracing.", c.Tracing.validate()),
		configerr.Prefix("reload.", c.Reload.validate()),
		configerr.Prefix("auth_api.", c.AuthAPI.Validate()))
	if c.Usage.Enabled {
		errs = append(errs, configerr.Prefix("usage.", c.Usage.Validate()))
	}
	return errors.Join(errs...)
}

// authAPIProblems reports what the auth API needs of the rest of the
// configuration: Firebase users, the user table, and revocation checks,
// without which a logged-out ID token stays valid for the rest of its hour.
func (c Config) authAPIProblems() []error {
	if !c.AuthAPI.Enabled {
		return nil
	}
	var errs []error
	if !c.Verify.Firebase.Enabled {
		errs = append(errs, errors.New("auth_api.enabled: needs verify.firebase.enabled: the accounts it makes are that project's Firebase users"))
	} else if !c.Verify.Firebase.Revocation.Enabled {
		errs = append(errs, errors.New("auth_api.enabled: needs verify.firebase.revocation.enabled, or a logout would leave the user's ID tokens valid for up to an hour"))
	}
	if !c.Federation.Enabled {
		errs = append(errs, errors.New("auth_api.enabled: needs federation.enabled: every registration and login writes the user table"))
	}
	prefix := c.AuthAPI.Prefix
	for _, other := range []struct {
		key, path string
		on        bool
	}{{"forward_auth.path", c.Proxy.ForwardAuth.Path, c.Proxy.ForwardAuth.Enabled}, {"token_api.prefix", c.Proxy.TokenAPI.Prefix, c.Proxy.TokenAPI.Enabled}} {
		if other.on && other.path != "" && (underPath(prefix, other.path) || underPath(other.path, prefix)) {
			errs = append(errs, fmt.Errorf("auth_api.prefix: %q overlaps %s %q", prefix, other.key, other.path))
		}
	}
	return errs
}

// underPath reports whether a is p or a path under it.
func underPath(a, p string) bool { return a == p || strings.HasPrefix(a, p+"/") }

// sameListenAddr reports whether two listen addresses would collide: the
// same fixed port on the same host or on a wildcard host. Port 0 picks a
// free port and never collides.
func sameListenAddr(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return a == b
	}
	if pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

func (l ListenerConfig) validate() error {
	var errs []error
	if l.Addr == "" {
		errs = append(errs, errors.New("addr: must be set"))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"read_header_timeout", l.ReadHeaderTimeout}, {"read_timeout", l.ReadTimeout}, {"write_timeout", l.WriteTimeout}, {"idle_timeout", l.IdleTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", d.key))
		}
	}
	if l.MaxHeaderBytes < 4<<10 || l.MaxHeaderBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("max_header_bytes: %d is outside 4096..1048576", l.MaxHeaderBytes))
	}
	return errors.Join(errs...)
}

// loadConfig reads path (if not empty) over the defaults, then applies
// AUTHGATE_* environment variables from environ, then validates.
func loadConfig(path string, environ []string) (Config, error) {
	cfg := defaultConfig()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if err := decodeYAML(b, &cfg); err != nil {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	envErr := applyEnv(&cfg, environ)
	return cfg, errors.Join(envErr, cfg.Validate())
}

// removedKeys are keys of earlier releases that no longer exist, with what
// replaced them: a file or variable that still sets one is refused with
// this, not with the decoder's "field not found".
var removedKeys = map[string]string{
	"cache.local_entries": "removed: every in-process cache now shares one byte budget, cache.local_max_bytes",
}

// ignoredKeys are keys of earlier releases that no longer have any effect,
// with why. Unlike removedKeys, whose meaning went elsewhere, nothing is
// lost by ignoring them, so a configuration that still sets one keeps
// starting: serve warns once per key.
var ignoredKeys = map[string]string{
	"usage.max_pending": "no longer has an effect: the usage batch between flushes is a 16 KiB sketch per provider and route, whatever the number of users; remove it",
}

// decodeYAML decodes strictly: an unknown key is an error, not a silent
// default. A key of removedKeys is refused with its line; one of
// ignoredKeys is noted in cfg.ignored and its line blanked, rather than
// the document encoded again, so that the decoder's errors keep their
// line numbers.
func decodeYAML(b []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err == nil {
		lines := bytes.SplitAfter(b, []byte("\n"))
		blank := map[int]bool{} // lines of ignored keys, from 0
		err := walkKeys(&doc, "", func(k string, m, kn, vn *yaml.Node) error {
			if why, ok := removedKeys[k]; ok {
				return fmt.Errorf("line %d: %s: %s", kn.Line, k, why)
			}
			why, ok := ignoredKeys[k]
			if !ok {
				return nil
			}
			// Only a key on a line of its own with its value can go with
			// its line; the operator removes any other (flow style, a
			// value on the next lines).
			line := kn.Line - 1
			if m.Style&yaml.FlowStyle != 0 || vn.Kind != yaml.ScalarNode || vn.Line != kn.Line ||
				line >= len(lines) || kn.Column-1 > len(lines[line]) ||
				len(bytes.TrimSpace(lines[line][:kn.Column-1])) > 0 {
				return fmt.Errorf("line %d: %s: %s", kn.Line, k, why)
			}
			blank[line] = true
			cfg.ignored = append(cfg.ignored, ignoredKey{path: k, where: fmt.Sprintf("line %d", kn.Line), why: why})
			return nil
		})
		if err != nil {
			return err
		}
		if len(blank) > 0 {
			// A copy, keeping each line's end: b is the caller's.
			out := make([]byte, 0, len(b))
			for i, l := range lines {
				if blank[i] {
					l = l[len(bytes.TrimRight(l, "\r\n")):]
				}
				out = append(out, l...)
			}
			b = out
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// walkKeys calls visit with the dotted path of every mapping key under n,
// the mapping and the key's and value's nodes, in document order, and
// stops at its first error.
func walkKeys(n *yaml.Node, path string, visit func(path string, m, k, v *yaml.Node) error) error {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := walkKeys(c, path, visit); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			k := kn.Value
			if path != "" {
				k = path + "." + k
			}
			if err := visit(k, n, kn, vn); err != nil {
				return err
			}
			if err := walkKeys(vn, k, visit); err != nil {
				return err
			}
		}
	}
	return nil
}

// envKeyOf returns the key of keys (removedKeys or ignoredKeys) that the
// variable name stands for, and why it is listed there.
func envKeyOf(keys map[string]string, name string) (path, why string) {
	for k, why := range keys {
		if envPrefix+strings.ToUpper(strings.NewReplacer(".", "_").Replace(k)) == name {
			return k, why
		}
	}
	return "", ""
}

// envKey is one config leaf reachable from the environment.
type envKey struct {
	name string // AUTHGATE_...
	path string // dotted key path, for errors
	v    reflect.Value
}

// envKeys lists every leaf of cfg with its environment variable name.
func envKeys(cfg *Config) []envKey {
	var out []envKey
	var walk func(v reflect.Value, path []string)
	walk = func(v reflect.Value, path []string) {
		t := v.Type()
		if t.Kind() == reflect.Struct && t != reflect.TypeOf(time.Duration(0)) {
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				tag := f.Tag.Get("yaml")
				name, opts, _ := strings.Cut(tag, ",")
				if name == "-" {
					continue
				}
				if opts == "inline" {
					walk(v.Field(i), path)
					continue
				}
				if name == "" {
					name = strings.ToLower(f.Name)
				}
				walk(v.Field(i), append(append([]string(nil), path...), name))
			}
			return
		}
		out = append(out, envKey{
			name: envPrefix + strings.ToUpper(strings.Join(path, "_")),
			path: strings.Join(path, "."),
			v:    v,
		})
	}
	walk(reflect.ValueOf(cfg).Elem(), nil)
	return out
}

// applyEnv sets every key named by an AUTHGATE_* variable. Lists take
// comma-separated values or YAML flow syntax ([a, b]); routes and maps take
// YAML. An AUTHGATE_* variable that names no key is an error, so a typo does
// not go unnoticed.
func applyEnv(cfg *Config, environ []string) error {
	keys := map[string]envKey{}
	for _, k := range envKeys(cfg) {
		keys[k.name] = k
	}
	var errs []error
	var names []string
	vals := map[string]string{}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) {
			continue
		}
		names = append(names, name)
		vals[name] = val
	}
	sort.Strings(names)
	for _, name := range names {
		k, ok := keys[name]
		if !ok {
			if path, why := envKeyOf(removedKeys, name); path != "" {
				errs = append(errs, fmt.Errorf("%s (%s): %s", name, path, why))
				continue
			}
			if path, why := envKeyOf(ignoredKeys, name); path != "" {
				cfg.ignored = append(cfg.ignored, ignoredKey{path: path, where: name, why: why})
				continue
			}
			errs = append(errs, fmt.Errorf("%s: no such configuration key", name))
			continue
		}
		if err := setFromEnv(k.v, vals[name]); err != nil {
			// The value may be a secret: name the variable, never the value.
			errs = append(errs, fmt.Errorf("%s (%s): %w", name, k.path, err))
		}
	}
	return errors.Join(errs...)
}

func setFromEnv(v reflect.Value, s string) error {
	if strings.TrimSpace(s) == "" && v.Kind() != reflect.String && !(v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String) {
		// An empty YAML value keeps the default; an empty variable must not
		// quietly mean zero (false, 0) instead.
		return fmt.Errorf("empty value for a %s; unset the variable to keep the default", kindName(v.Type()))
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(s), "[") {
		parts := reflect.MakeSlice(v.Type(), 0, 1)
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				// Convert: the elements may be a string type (secret.Secret).
				parts = reflect.Append(parts, reflect.ValueOf(p).Convert(v.Type().Elem()))
			}
		}
		v.Set(parts)
		return nil
	}
	if v.Kind() == reflect.String {
		v.SetString(s)
		return nil
	}
	p := reflect.New(v.Type())
	if err := yaml.Unmarshal([]byte(s), p.Interface()); err != nil {
		return fmt.Errorf("cannot parse as %s", v.Type())
	}
	v.Set(p.Elem())
	return nil
}

// kindName names a config value's type for an error message.
func kindName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "duration"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Map:
		return "map"
	}
	return t.String()
}

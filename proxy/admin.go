package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authgate/authgate/internal/secret"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one dependency that readiness reports on.
type Check struct {
	// Name labels the dependency in /readyz ("verify", "redis", ...).
	Name string
	// Critical checks make authgate not ready when they fail; others only
	// make it "degraded" (it keeps serving).
	Critical bool
	// Func returns nil when the dependency is usable.
	Func func(ctx context.Context) error
}

// AdminConfig configures the admin listener's handler.
type AdminConfig struct {
	// Pprof serves /debug/pprof/ (CPU and allocation profiles). Default off.
	Pprof bool `yaml:"pprof"`
	// CheckTimeout bounds each readiness check. Default 2s.
	CheckTimeout time.Duration `yaml:"check_timeout"`
	// APISecret is the bearer secret of the admin API (POST
	// /admin/users/{id}/link); at least 32 bytes. Empty, with
	// APISecretFile empty too, turns the admin API off (404). Prefer
	// APISecretFile or the AUTHGATE_SERVER_ADMIN_API_SECRET variable.
	APISecret secret.Secret `yaml:"api_secret"`
	// APISecretFile is a file holding the admin API secret (a trailing
	// newline is ignored), such as a mounted Kubernetes Secret.
	APISecretFile string `yaml:"api_secret_file"`
}

// DefaultAdminConfig returns the admin handler's defaults: no pprof, no
// admin API, 2s per readiness check.
func DefaultAdminConfig() AdminConfig { return AdminConfig{CheckTimeout: 2 * time.Second} }

// Validate reports every problem, each prefixed with its key. The secret
// file is read to check it.
func (c AdminConfig) Validate() error {
	var errs []error
	if c.CheckTimeout <= 0 {
		errs = append(errs, fmt.Errorf("check_timeout: %s must be positive", c.CheckTimeout))
	}
	if _, err := c.apiSecret(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// apiSecret returns the admin API secret, from APISecret or
// APISecretFile; "" when neither is set. Errors never quote the secret.
func (c AdminConfig) apiSecret() (string, error) {
	key := "api_secret"
	if c.APISecretFile != "" {
		key = "api_secret_file"
	}
	s, err := secret.Pick("api_secret", c.APISecret, "api_secret_file", c.APISecretFile)
	if err != nil || s == "" {
		return "", err
	}
	if len(s) < minAdminSecret {
		return "", fmt.Errorf("%s: %d bytes is too short; the admin API secret needs at least %d (openssl rand -hex 32)", key, len(s), minAdminSecret)
	}
	return s.Value(), nil
}

// Admin API secret bounds.
const (
	minAdminSecret = 32
)

// Admin serves /healthz, /readyz, /metrics and optionally /debug/pprof/ on
// the admin listener, and the admin API under /admin/ when WithAdminAPI
// mounts it. It is safe for concurrent use.
type Admin struct {
	mux      *http.ServeMux
	checks   []Check
	timeout  time.Duration
	draining atomic.Bool
}

// AdminOption adjusts an Admin.
type AdminOption func(*Admin)

// WithAdminAPI serves api under /admin/.
func WithAdminAPI(api *AdminAPI) AdminOption {
	return func(a *Admin) { a.mux.Handle("/admin/", api) }
}

// WithAdminJWKS serves the identity assertion's JWKS at path (the same
// path as on the public listener).
func WithAdminJWKS(path string, k AssertionKeys) AdminOption {
	return func(a *Admin) { a.mux.Handle(path, k.JWKSHandler()) }
}

// WithAdminJWKSOf serves at path the JWKS that h serves at the time of
// each request (404 while h has no assertion keys), so that keys a reload
// brings are published on both listeners.
func WithAdminJWKSOf(path string, h *Handler) AdminOption {
	return func(a *Admin) { a.mux.Handle(path, http.HandlerFunc(h.serveJWKS)) }
}

// NewAdmin builds the admin handler. gatherer is served on /metrics.
func NewAdmin(cfg AdminConfig, gatherer prometheus.Gatherer, checks []Check, opts ...AdminOption) *Admin {
	a := &Admin{mux: http.NewServeMux(), checks: checks, timeout: cfg.CheckTimeout}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	a.mux.HandleFunc("GET /readyz", a.serveReady)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		a.mux.HandleFunc("/debug/pprof/", pprof.Index)
		a.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		a.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		a.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		a.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// ServeHTTP implements http.Handler.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Drain makes /readyz answer 503 so that load balancers stop sending new
// requests while in-flight ones finish.
func (a *Admin) Drain() { a.draining.Store(true) }

// CheckState is one dependency's state in the readiness answer.
type CheckState struct {
	Status string `json:"status"` // ok, degraded, down
	Error  string `json:"error,omitempty"`
}

// Readiness is the JSON body of /readyz.
type Readiness struct {
	Status string                `json:"status"` // ready, degraded, not_ready, draining
	Checks map[string]CheckState `json:"checks"`
}

// Ready runs every check concurrently and summarises them.
func (a *Admin) Ready(ctx context.Context) Readiness {
	res := Readiness{Status: "ready", Checks: make(map[string]CheckState, len(a.checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range a.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, a.timeout)
			defer cancel()
			st := CheckState{Status: "ok"}
			if err := c.Func(cctx); err != nil {
				st = CheckState{Status: "degraded", Error: err.Error()}
				if c.Critical {
					st.Status = "down"
				}
			}
			mu.Lock()
			res.Checks[c.Name] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, st := range res.Checks {
		switch {
		case st.Status == "down":
			res.Status = "not_ready"
		case st.Status == "degraded" && res.Status == "ready":
			res.Status = "degraded"
		}
	}
	if a.draining.Load() {
		res.Status = "draining"
	}
	return res
}

func (a *Admin) serveReady(w http.ResponseWriter, r *http.Request) {
	res := a.Ready(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if res.Status == "not_ready" || res.Status == "draining" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(res)
}

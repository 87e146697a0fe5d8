package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

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
}

// Admin serves /healthz, /readyz, /metrics and optionally /debug/pprof/ on
// the admin listener. It is safe for concurrent use.
type Admin struct {
	mux      *http.ServeMux
	checks   []Check
	timeout  time.Duration
	draining atomic.Bool
}

// NewAdmin builds the admin handler. gatherer is served on /metrics.
func NewAdmin(cfg AdminConfig, gatherer prometheus.Gatherer, checks []Check) *Admin {
	a := &Admin{mux: http.NewServeMux(), checks: checks, timeout: cfg.CheckTimeout}
	if a.timeout <= 0 {
		a.timeout = 2 * time.Second
	}
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

package verify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/configerr"
)

// Config configures every issuer authgate accepts.
type Config struct {
	// Legacy is the platform's own JWT issuer.
	Legacy LegacyConfig `yaml:"legacy"`
}

// Validate reports every problem, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	if !c.Legacy.Enabled {
		errs = append(errs, errors.New("legacy.enabled: no issuer is enabled; enable at least one"))
	}
	if err := c.Legacy.Validate(); err != nil {
		errs = append(errs, configerr.Prefix("legacy.", err))
	}
	return errors.Join(errs...)
}

// issuer is one configured token issuer.
type issuer interface {
	owns(t *token) bool
	verify(t *token, now time.Time) (Identity, error)
}

// Verifier checks tokens against every configured issuer. The issuer is
// chosen by the token's unverified iss claim; only that issuer's keys and
// algorithms are then used. It is safe for concurrent use.
type Verifier struct {
	issuers  []namedIssuer
	now      func() time.Time
	log      *zap.Logger
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

type namedIssuer struct {
	provider Provider
	issuer
}

// Option adjusts a Verifier.
type Option func(*Verifier)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// New builds a Verifier from cfg. reg receives the verification metrics; it
// may be nil.
func New(cfg Config, log *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{now: time.Now, log: log.Named("verify")}
	if cfg.Legacy.Enabled {
		l, err := newLegacy(cfg.Legacy)
		if err != nil {
			return nil, configerr.Prefix("legacy.", err)
		}
		v.issuers = append(v.issuers, namedIssuer{ProviderLegacy, l})
	}
	for _, o := range opts {
		o(v)
	}
	v.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "verify_total",
		Help: "Token verifications by provider and result.",
	}, []string{"provider", "result"})
	v.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "verify_duration_seconds",
		Help:    "Time spent verifying a token that was not cached, by provider.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1},
	}, []string{"provider"})
	for _, p := range []Provider{ProviderLegacy, ProviderFirebase, "none"} {
		for _, r := range []string{"ok", "invalid", "expired", "malformed", "unknown_issuer", "keys_unavailable", "error"} {
			v.total.WithLabelValues(string(p), r)
		}
	}
	if reg != nil {
		if err := registerAll(reg, v.total, v.duration); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Verify checks token and returns the identity it proves. Errors wrap one of
// the package's sentinel errors.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	start := v.now()
	t, err := parse(raw)
	if err != nil {
		v.total.WithLabelValues("none", Reason(err)).Inc()
		return Identity{}, err
	}
	for _, is := range v.issuers {
		if !is.owns(t) {
			continue
		}
		id, err := is.verify(t, start)
		v.total.WithLabelValues(string(is.provider), Reason(err)).Inc()
		v.duration.WithLabelValues(string(is.provider)).Observe(v.now().Sub(start).Seconds())
		return id, err
	}
	v.total.WithLabelValues("none", "unknown_issuer").Inc()
	return Identity{}, ErrUnknownIssuer
}

// Check reports whether the verifier can verify tokens now, for readiness.
func (v *Verifier) Check(ctx context.Context) error {
	if len(v.issuers) == 0 {
		return errors.New("no issuers")
	}
	return nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

package authapi

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoints, as metric labels and path suffixes.
const (
	epRegister = iota
	epLogin
	epRefresh
	epLogout
	epMe
	numEndpoints
)

var endpointNames = [numEndpoints]string{"register", "login", "refresh", "logout", "me"}

// Results besides the error codes.
const (
	resultOK       = "ok"
	resultMigrated = "migrated" // a login that moved a legacy account to Firebase
)

// metrics are the auth API's series, all label combinations made at
// construction so that each starts at 0.
type metrics struct {
	requests *prometheus.CounterVec
	duration [numEndpoints]prometheus.Observer
	// hashChecks counts bcrypt comparisons: one for every sign-in
	// Firebase refused while legacy passwords are on.
	hashChecks prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "auth_api_requests_total",
		Help: "Auth API requests by endpoint and result: ok, migrated (a login that moved a legacy account to Firebase), or the error code.",
	}, []string{"endpoint", "result"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "auth_api_request_duration_seconds",
		Help:    "Time to answer an auth API request, Firebase and the user table included, by endpoint.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"endpoint"})
	for i, ep := range endpointNames {
		m.duration[i] = dur.WithLabelValues(ep)
		m.requests.WithLabelValues(ep, resultOK)
		for _, c := range codes {
			m.requests.WithLabelValues(ep, c)
		}
	}
	m.requests.WithLabelValues(endpointNames[epLogin], resultMigrated)
	m.hashChecks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "auth_api_password_hash_checks_total",
		Help: "Legacy password hash comparisons (bcrypt), one per sign-in Firebase refused while legacy_passwords is on, whether or not the email had a hash.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, dur, m.hashChecks} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register auth api metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(ep int, result string, d time.Duration) {
	m.requests.WithLabelValues(endpointNames[ep], result).Inc()
	m.duration[ep].Observe(d.Seconds())
}

package proxy

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	modes        = [...]string{modeProxy, modeForwardAuth, modeTokenAPI}
	statusClass  = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}
	durationBins = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// metrics holds the request series, resolved at construction so that the
// hot path does no label lookups.
type metrics struct {
	// requests[mode][route+1][class]; route 0 is "none".
	requests [len(modes)][][len(statusClass)]prometheus.Counter
	duration [len(modes)]prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, routes []string) (*metrics, error) {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "requests_total",
		Help: "Requests on the public listener by mode, route and status class.",
	}, []string{"mode", "route", "code"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "request_duration_seconds",
		Help:    "Time from request to response on the public listener, by mode.",
		Buckets: durationBins,
	}, []string{"mode"})
	m := &metrics{}
	names := append([]string{"none"}, routes...)
	for mi, mode := range modes {
		m.requests[mi] = make([][len(statusClass)]prometheus.Counter, len(names))
		for ri, rn := range names {
			for ci, c := range statusClass {
				m.requests[mi][ri][ci] = reqs.WithLabelValues(mode, rn, c)
			}
		}
		m.duration[mi] = dur.WithLabelValues(mode)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{reqs, dur} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register proxy metrics: %w", err)
			}
		}
	}
	return m, nil
}

func modeIndex(mode string) int {
	for i, m := range modes {
		if m == mode {
			return i
		}
	}
	return 0
}

func (m *metrics) observe(mode string, route, status int, d time.Duration) {
	mi := modeIndex(mode)
	ci := status/100 - 1
	if ci < 0 || ci >= len(statusClass) {
		ci = len(statusClass) - 1
	}
	m.requests[mi][route+1][ci].Inc()
	m.duration[mi].Observe(d.Seconds())
}

package proxy

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	modes        = [...]string{modeProxy, modeForwardAuth, modeTokenAPI, modeAuthAPI, modeJWKS, modeExtAuthzGRPC}
	statusClass  = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}
	durationBins = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// metrics holds the request series, resolved at construction so that the
// hot path does no label lookups.
type metrics struct {
	// requests[mode][route+1][class]; route 0 is "none".
	requests [len(modes)][][len(statusClass)]prometheus.Counter
	duration [len(modes)]prometheus.Observer
	// upstream[route+1][class] times the upstream round trip in proxy mode.
	upstream    [][len(statusClass)]prometheus.Observer
	upstreamVec *prometheus.HistogramVec
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
	up := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "upstream_request_duration_seconds",
		Help:    "Time from forwarding a request to the upstream until its response ended, by route and status class.",
		Buckets: durationBins,
	}, []string{"route", "code"})
	m := &metrics{upstreamVec: up}
	names := append([]string{"none"}, routes...)
	m.upstream = make([][len(statusClass)]prometheus.Observer, len(names))
	for ri, rn := range names {
		for ci, c := range statusClass {
			m.upstream[ri][ci] = up.WithLabelValues(rn, c)
		}
	}
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
		for _, c := range []prometheus.Collector{reqs, dur, up} {
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
	m.requests[modeIndex(mode)][route+1][classIndex(status)].Inc()
	m.duration[modeIndex(mode)].Observe(d.Seconds())
}

func (m *metrics) observeUpstream(route, status int, d time.Duration) {
	m.upstream[route+1][classIndex(status)].Observe(d.Seconds())
}

// classIndex is the status class of code; anything odd counts as 5xx.
func classIndex(code int) int {
	ci := code/100 - 1
	if ci < 0 || ci >= len(statusClass) {
		ci = len(statusClass) - 1
	}
	return ci
}

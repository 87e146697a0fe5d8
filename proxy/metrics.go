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

// metricVecs are the request series of a Handler, registered once and
// resolved for each configuration's routes.
type metricVecs struct {
	reqs   *prometheus.CounterVec
	dur    *prometheus.HistogramVec
	up     *prometheus.HistogramVec
	legacy *prometheus.CounterVec
}

func newMetricVecs(reg prometheus.Registerer) (*metricVecs, error) {
	v := &metricVecs{}
	v.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "requests_total",
		Help: "Requests on the public listener by mode, route and status class.",
	}, []string{"mode", "route", "code"})
	v.dur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "request_duration_seconds",
		Help:    "Time from request to response on the public listener, by mode.",
		Buckets: durationBins,
	}, []string{"mode"})
	v.up = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "upstream_request_duration_seconds",
		Help:    "Time from forwarding a request to the upstream until its response ended, by route and status class.",
		Buckets: durationBins,
	}, []string{"route", "code"})
	if reg != nil {
		for _, c := range []prometheus.Collector{v.reqs, v.dur, v.up} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register proxy metrics: %w", err)
			}
		}
	}
	var err error
	if v.legacy, err = newLegacyVec(reg); err != nil {
		return nil, err
	}
	return v, nil
}

// resolve makes the series of routes (their names, in order) so that the
// hot path does no label lookups. A route a reload removed keeps its
// series, at their last values.
func (v *metricVecs) resolve(routes []string) *metrics {
	m := &metrics{upstreamVec: v.up}
	names := append([]string{"none"}, routes...)
	m.upstream = make([][len(statusClass)]prometheus.Observer, len(names))
	for ri, rn := range names {
		for ci, c := range statusClass {
			m.upstream[ri][ci] = v.up.WithLabelValues(rn, c)
		}
	}
	for mi, mode := range modes {
		m.requests[mi] = make([][len(statusClass)]prometheus.Counter, len(names))
		for ri, rn := range names {
			for ci, c := range statusClass {
				m.requests[mi][ri][ci] = v.reqs.WithLabelValues(mode, rn, c)
			}
		}
		m.duration[mi] = v.dur.WithLabelValues(mode)
	}
	return m
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

package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/verify"
)

// The access log is a behaviour here: one line per request with the
// agreed fields, and never the token, cookie or email.
func TestAccessLog(t *testing.T) {
	up := newUpstream(t, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	h, err := New(testConfig(up.URL), newVerifier(t), zap.New(core), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, "u-1", nil)
	r := httptest.NewRequest("GET", "http://svc/x", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Cookie", "__session="+tok)
	r.Header.Set("X-Request-Id", "req-123")
	w := serve(h, r, "203.0.113.9:1")
	if got := w.Header().Get("X-Request-Id"); got != "req-123" {
		t.Errorf("response X-Request-Id = %q, want req-123", got)
	}
	if got := up.last(t).Header.Get("X-Request-Id"); got != "req-123" {
		t.Errorf("upstream X-Request-Id = %q, want req-123", got)
	}
	r = httptest.NewRequest("GET", "http://svc/x", nil)
	r.Header.Set("Authorization", "Bearer "+forgedToken(t, "u-1"))
	r.Header.Set("X-Request-Id", "bad id\nwith newline")
	serve(h, r, "203.0.113.9:1")

	entries := logs.FilterMessage("request").All()
	if len(entries) != 2 {
		t.Fatalf("got %d access log lines, want 2", len(entries))
	}
	first := entries[0].ContextMap()
	for k, want := range map[string]any{"request_id": "req-123", "route": "default", "status": int64(200), "user_id": "u-1", "mode": "proxy"} {
		if first[k] != want {
			t.Errorf("log field %s = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := first["duration"]; !ok {
		t.Error("log line has no duration")
	}
	second := entries[1].ContextMap()
	if id, _ := second["request_id"].(string); id == "" || strings.ContainsAny(id, " \n") {
		t.Errorf("request_id = %q, want a generated id replacing the bad one", id)
	}
	if second["reason"] != "invalid" || second["status"] != int64(401) {
		t.Errorf("second line reason/status = %v/%v, want invalid/401", second["reason"], second["status"])
	}
	for _, e := range entries {
		b, _ := json.Marshal(e.ContextMap())
		line := string(b) + e.Message
		for _, secret := range []string{tok, "u-1@example.test", "Bearer"} {
			if strings.Contains(line, secret) {
				t.Errorf("log line contains %q: %s", secret, line)
			}
		}
	}
}

func TestRequestMetrics(t *testing.T) {
	up := newUpstream(t, nil)
	reg := prometheus.NewRegistry()
	h, err := New(testConfig(up.URL), newVerifier(t), zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, "u-1", nil)
	for _, c := range []struct {
		path, tok, peer string
		hdr             map[string]string
	}{
		{path: "/x", tok: tok},
		{path: "/x", tok: tok},
		{path: "/x"},
		{path: "/auth", tok: tok, peer: "127.0.0.1:1", hdr: map[string]string{"X-Forwarded-Uri": "/admin"}},
	} {
		r := httptest.NewRequest("GET", "http://svc"+c.path, nil)
		if c.tok != "" {
			r.Header.Set("Authorization", "Bearer "+c.tok)
		}
		for k, v := range c.hdr {
			r.Header.Set(k, v)
		}
		serve(h, r, c.peer)
	}
	want := `
# HELP requests_total Requests on the public listener by mode, route and status class.
# TYPE requests_total counter
requests_total{code="2xx",mode="proxy",route="default"} 2
requests_total{code="4xx",mode="proxy",route="default"} 1
requests_total{code="4xx",mode="forward_auth",route="admin"} 1
`
	// Compare only the non-zero series: every combination exists from the
	// start, at zero.
	n, err := testutil.GatherAndCount(reg, "requests_total")
	if err != nil {
		t.Fatal(err)
	}
	if wantSeries := len(modes) * (len(testRoutes) + 1) * len(statusClass); n != wantSeries {
		t.Errorf("requests_total has %d series, want %d pre-created", n, wantSeries)
	}
	got := nonZero(t, reg, "requests_total")
	for _, line := range strings.Split(strings.TrimSpace(want), "\n")[2:] {
		if !strings.Contains(got, line) {
			t.Errorf("metrics missing %q; got:\n%s", line, got)
		}
	}
	if strings.Count(got, "\n") != 3 {
		t.Errorf("unexpected non-zero series:\n%s", got)
	}
	// The two proxied requests were timed upstream; the refused ones were not.
	if n := testutil.CollectAndCount(h.cur.Load().metrics.upstreamVec, "upstream_request_duration_seconds"); n != (len(testRoutes)+1)*len(statusClass) {
		t.Errorf("upstream_request_duration_seconds has %d series, want all pre-created", n)
	}
	if c := histogramCount(t, reg, "upstream_request_duration_seconds", map[string]string{"route": "default", "code": "2xx"}); c != 2 {
		t.Errorf("upstream_request_duration_seconds{route=default,code=2xx} count = %d, want 2", c)
	}
}

// histogramCount returns the sample count of the histogram series of name
// with exactly labels.
func histogramCount(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// nonZero renders the non-zero samples of metric name, one per line.
func nonZero(t *testing.T, g prometheus.Gatherer, name string) string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter().GetValue() == 0 {
				continue
			}
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			b.WriteString(name + `{code="` + labels["code"] + `",mode="` + labels["mode"] + `",route="` + labels["route"] + `"} `)
			b.WriteString(strconv.FormatFloat(m.GetCounter().GetValue(), 'f', -1, 64) + "\n")
		}
	}
	return b.String()
}

func TestAdmin(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "authgate_test_total", Help: "t"})
	reg.MustRegister(c)
	redisDown := errors.New("dial tcp 127.0.0.1:6379: connection refused")
	var redisErr error
	a := NewAdmin(AdminConfig{CheckTimeout: 2 * time.Second}, reg, []Check{
		{Name: "verify", Critical: true, Func: func(context.Context) error { return nil }},
		{Name: "redis", Func: func(context.Context) error { return redisErr }},
	})
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		a.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w
	}
	if w := get("/healthz"); w.Code != 200 {
		t.Errorf("/healthz = %d, want 200", w.Code)
	}
	if w := get("/metrics"); w.Code != 200 || !strings.Contains(w.Body.String(), "authgate_test_total 0") {
		t.Errorf("/metrics = %d %q, want the registry", w.Code, w.Body.String())
	}
	if w := get("/debug/pprof/"); w.Code != 404 {
		t.Errorf("/debug/pprof/ = %d, want 404 when pprof is off", w.Code)
	}
	tests := []struct {
		name       string
		giveRedis  error
		giveDrain  bool
		wantCode   int
		wantStatus string
	}{
		{name: "all ok", wantCode: 200, wantStatus: "ready"},
		{name: "redis down degrades", giveRedis: redisDown, wantCode: 200, wantStatus: "degraded"},
		{name: "draining", giveDrain: true, wantCode: 503, wantStatus: "draining"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redisErr = tt.giveRedis
			if tt.giveDrain {
				a.Drain()
			}
			w := get("/readyz")
			var got Readiness
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.wantCode || got.Status != tt.wantStatus {
				t.Errorf("/readyz = %d %q, want %d %q", w.Code, got.Status, tt.wantCode, tt.wantStatus)
			}
			if got.Checks["verify"].Status != "ok" {
				t.Errorf("verify check = %+v, want ok", got.Checks["verify"])
			}
		})
	}
}

// TestErrorPathsNeverSucceed: every refusal in every mode is 4xx or 5xx.
func TestErrorPathsNeverSucceed(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHandler(t, testConfig(up.URL))
	bad := []string{"", "Bearer", "Bearer x", "Bearer a.b.c", "Bearer " + strings.Repeat("a.", 50000), "Bearer \xff\xfe.\x00.x", forgedToken(t, "u")}
	for _, mode := range []string{"/x", "/auth"} {
		for _, auth := range bad {
			r := httptest.NewRequest("GET", "http://svc"+mode, nil)
			r.Header.Set("X-Forwarded-Uri", "/x")
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			w := serve(h, r, "127.0.0.1:1")
			if w.Code < 400 {
				t.Errorf("%s with Authorization %.20q = %d, want 4xx/5xx", mode, auth, w.Code)
			}
			if mode == "/auth" && w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden {
				t.Errorf("forward-auth answered %d, want 401 or 403", w.Code)
			}
		}
	}
	if up.count() != 0 {
		t.Errorf("upstream reached %d times by refused requests", up.count())
	}
}

// TestStatusFor pins the one error-to-status mapping.
func TestStatusFor(t *testing.T) {
	tests := []struct {
		give error
		want int
	}{
		{give: verify.ErrMalformed, want: 401},
		{give: verify.ErrInvalid, want: 401},
		{give: verify.ErrExpired, want: 401},
		{give: verify.ErrUnknownIssuer, want: 401},
		{give: fmt.Errorf("check: %w: %w", verify.ErrRevoked, verify.ErrUserDisabled), want: 401},
		{give: verify.ErrKeysUnavailable, want: 503},
		{give: fmt.Errorf("check: %w", verify.ErrRevocationUnavailable), want: 503},
		{give: errNoToken, want: 401},
		{give: errForbidden, want: 403},
		{give: errNoRoute, want: 403},
		{give: errAmbiguousPath, want: 400},
		{give: errAmbiguousToken, want: 400},
		{give: errUpstream, want: 502},
		{give: errUpstreamTime, want: 504},
		{give: context.Canceled, want: 499},
		{give: errors.New("surprise"), want: 500},
	}
	for _, tt := range tests {
		if got := statusFor(tt.give); got != tt.want {
			t.Errorf("statusFor(%v) = %d, want %d", tt.give, got, tt.want)
		}
	}
}

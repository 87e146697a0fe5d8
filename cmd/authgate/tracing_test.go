package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.uber.org/zap/zaptest"
)

// With tracing on, a request's spans reach the OTLP endpoint named by the
// standard OTEL_* variable, at the latest when the app closes.
func TestTracingExportsToOTLPEndpoint(t *testing.T) {
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.URL+"/v1/traces")

	secret := writeFile(t, "secret", "tracing-secret-0123456789abcdef0123456789")
	cfg, err := loadConfig(writeFile(t, "c.yaml", minimalConfig), []string{
		"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret,
		"AUTHGATE_TRACING_ENABLED=true",
		"AUTHGATE_TRACING_SAMPLE_RATIO=1",
		"AUTHGATE_UPSTREAM=builtin:echo",
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(t.Context(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	a.handler.ServeHTTP(w, httptest.NewRequest("GET", "http://svc/x", nil))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", w.Code)
	}
	a.close()
	if posts.Load() == 0 {
		t.Error("collector received no spans, want the request's span flushed on close")
	}
}

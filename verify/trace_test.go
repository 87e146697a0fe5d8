package verify_test

import (
	"github.com/authgate/authgate/internal/configtest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify"
)

func TestVerifyTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	v, err := verify.New(configtest.Fill(verify.Config{Legacy: legacyConfig()}, verify.DefaultConfig()), zaptest.NewLogger(t), nil,
		verify.WithClock(func() time.Time { return testNow }), verify.WithTracerProvider(tp))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { v.Close() })
	tok := hs256(t, claimsWith())

	tests := []struct {
		name         string
		wantCache    string
		wantUncached int
	}{
		{name: "miss", wantCache: "miss", wantUncached: 1},
		{name: "hit", wantCache: "hit", wantUncached: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp.Reset()
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			spans := exp.GetSpans()
			var top tracetest.SpanStub
			uncached := 0
			for _, s := range spans {
				switch s.Name {
				case "verify.Verify":
					top = s
				case "verify.verify_uncached":
					uncached++
				}
			}
			if uncached != tt.wantUncached {
				t.Errorf("verify.verify_uncached spans = %d, want %d", uncached, tt.wantUncached)
			}
			got := map[string]string{}
			for _, a := range top.Attributes {
				got[string(a.Key)] = a.Value.Emit()
				if strings.Contains(a.Value.Emit(), "alice") || strings.Contains(a.Value.Emit(), tok) {
					t.Errorf("attribute %s = %q carries the subject or the token", a.Key, a.Value.Emit())
				}
			}
			want := map[string]string{"verify.cache": tt.wantCache, "verify.result": "ok", "verify.provider": "legacy"}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("verify.Verify %s = %q, want %q", k, got[k], w)
				}
			}
		})
	}
}

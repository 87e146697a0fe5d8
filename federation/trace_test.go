package federation

import (
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestEnsureUserTracesCacheMissOnly(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	f := newFixture(t, fixtureOpts{opts: []Option{WithTracerProvider(tp)}})
	ctx := testContext(t)
	id := firebaseID("uid-trace", "trace@example.com", true)

	tests := []struct {
		name       string
		wantSpans  int
		wantResult string
	}{
		{name: "miss creates the row", wantSpans: 1, wantResult: "created"},
		{name: "hit", wantSpans: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp.Reset()
			if _, err := f.s.EnsureUser(ctx, id); err != nil {
				t.Fatalf("EnsureUser: %v", err)
			}
			// With Redis configured the user cache adds its own
			// cache.redis_get span on a miss; only ours are counted.
			var spans tracetest.SpanStubs
			for _, s := range exp.GetSpans() {
				switch s.Name {
				case "federation.ensure_user":
					spans = append(spans, s)
				case "cache.redis_get":
				default:
					t.Errorf("unexpected span %q", s.Name)
				}
			}
			if len(spans) != tt.wantSpans {
				t.Fatalf("federation.ensure_user spans = %d, want %d", len(spans), tt.wantSpans)
			}
			for _, s := range spans {
				got := ""
				for _, a := range s.Attributes {
					if strings.Contains(a.Value.Emit(), "trace@") || strings.Contains(a.Value.Emit(), "uid-trace") {
						t.Errorf("attribute %s = %q carries the identity", a.Key, a.Value.Emit())
					}
					if a.Key == "federation.result" {
						got = a.Value.Emit()
					}
				}
				if got != tt.wantResult {
					t.Errorf("federation.result = %q, want %q", got, tt.wantResult)
				}
			}
		})
	}
}

package cache

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap/zaptest"
)

// A Redis lookup after an in-process miss is a span of its own, under the
// caller's; an in-process hit records nothing.
func TestRedisLookupSpans(t *testing.T) {
	rdb := testRedis(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	newReplica := func() *Cache[string] {
		c, err := New[string](DefaultConfig(), "traced", rdb, JSON[string]{}, zaptest.NewLogger(t), nil, WithTracerProvider(tp))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a, b := newReplica(), newReplica()
	load := func(context.Context) (string, time.Duration, error) { return "v", time.Minute, nil }
	ctx, parent := tp.Tracer("test").Start(t.Context(), "request")

	steps := []struct {
		name     string
		give     *Cache[string]
		wantSpan bool
		wantHit  bool
	}{
		{name: "replica A misses both tiers", give: a, wantSpan: true, wantHit: false},
		{name: "replica A hits in-process", give: a, wantSpan: false},
		{name: "replica B hits Redis", give: b, wantSpan: true, wantHit: true},
	}
	for _, st := range steps {
		exp.Reset()
		if _, err := st.give.GetOrLoad(ctx, "k", load); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		spans := exp.GetSpans()
		if got := len(spans) == 1; got != st.wantSpan || len(spans) > 1 {
			t.Fatalf("%s: %d spans, want span %t", st.name, len(spans), st.wantSpan)
		}
		if !st.wantSpan {
			continue
		}
		s := spans[0]
		if s.Name != "cache.redis_get" || s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: span %q with parent %s, want cache.redis_get under the request", st.name, s.Name, s.Parent.SpanID())
		}
		var hit bool
		for _, kv := range s.Attributes {
			if kv.Key == "hit" {
				hit = kv.Value.AsBool()
			}
		}
		if hit != st.wantHit {
			t.Errorf("%s: hit = %t, want %t", st.name, hit, st.wantHit)
		}
	}
	parent.End()
}

package main

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// newTracerProvider builds the OTLP/HTTP exporter (configured by the
// OTEL_EXPORTER_OTLP_* variables) and a provider that samples cfg's share
// of new traces and follows the client's decision for continued ones.
// shutdown flushes the spans not yet sent. It sets no global otel state:
// the provider is handed to each component.
func newTracerProvider(ctx context.Context, cfg TracingConfig) (*sdktrace.TracerProvider, error) {
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter (OTEL_EXPORTER_OTLP_* variables): %w", err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the config.
	res, err := resource.Merge(
		resource.NewSchemaless(attribute.String("service.name", cfg.ServiceName), attribute.String("service.version", version)),
		resource.Environment(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	), nil
}

// shutdownTracing flushes spans, giving up after a few seconds so that an
// unreachable collector does not hold up the exit.
func shutdownTracing(tp *sdktrace.TracerProvider) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return tp.Shutdown(ctx)
}

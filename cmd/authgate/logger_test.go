package main

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestLoggerBuffered(t *testing.T) {
	var out syncBuffer
	log, flush, err := newLogger(LogConfig{Level: "info", Format: "json", BufferBytes: 64 << 10, FlushInterval: time.Hour}, &out)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("request", zap.Int("n", 1))
	log.Info("request", zap.Int("n", 2))
	if got := out.String(); got != "" {
		t.Fatalf("info lines written before a flush: %q", got)
	}
	// A warning flushes, and keeps the order of the lines before it.
	log.Warn("key fetch failed")
	got := out.String()
	if i, j, k := strings.Index(got, `"n":1`), strings.Index(got, `"n":2`), strings.Index(got, "key fetch failed"); i < 0 || !(i < j && j < k) {
		t.Fatalf("after a warning, output = %q; want both info lines, then the warning", got)
	}
	log.Info("request", zap.Int("n", 3))
	flush()
	if !strings.Contains(out.String(), `"n":3`) {
		t.Errorf("the final flush lost a line: %q", out.String())
	}
}

func TestLoggerBufferFlushesOnInterval(t *testing.T) {
	var out syncBuffer
	log, flush, err := newLogger(LogConfig{Level: "info", Format: "json", BufferBytes: 64 << 10, FlushInterval: 20 * time.Millisecond}, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer flush()
	log.Info("request")
	pollUntil(t, 5*time.Second, "the buffered line to be written", func() bool { return strings.Contains(out.String(), "request") })
}

func TestLoggerUnbuffered(t *testing.T) {
	var out syncBuffer
	log, flush, err := newLogger(LogConfig{Level: "info", Format: "json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer flush()
	log.Info("request")
	if !strings.Contains(out.String(), "request") {
		t.Error("with buffer_bytes 0 a line was not written at once")
	}
}

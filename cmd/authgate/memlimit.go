package main

import (
	"runtime/debug"

	"go.uber.org/zap"
)

// ownsProcess is set by main: serve may then change process-wide runtime
// settings (the Go memory limit). Tests that run serve in their own
// process leave it false.
var ownsProcess bool

// memoryHeadroom is what the derived memory limit allows beyond the
// caches' byte budget: the runtime, the binary's data, connections and
// requests in flight, and the bounded state kept outside the caches
// (usage.max_pending, federation.last_login_max, the negative cache).
const memoryHeadroom = 64 << 20

// memoryLimitFields sets the Go runtime's soft memory limit when serve owns
// the process, and returns it and where it came from as fields of the
// "listening" log line (none otherwise). GOMEMLIMIT, when set, is the
// operator's number and the runtime already applies it (the Kubernetes
// manifests and the Helm chart set it to the container's memory limit).
// Without it the limit is cache.local_max_bytes plus memoryHeadroom, so
// that the heap, whose garbage GOGC alone lets grow to twice what is live,
// stays near the budget the operator set: the collector runs earlier
// instead. It is a soft limit: a process whose live heap exceeds it keeps
// running, the collector taking at most about half the CPU.
func memoryLimitFields(environ []string, budget int64) []zap.Field {
	if !ownsProcess {
		return nil
	}
	limit, from := debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	if lookupEnv(environ, "GOMEMLIMIT") == "" {
		limit, from = budget+memoryHeadroom, "cache.local_max_bytes"
		debug.SetMemoryLimit(limit)
	}
	return []zap.Field{zap.Int64("memory_limit_bytes", limit), zap.String("memory_limit_from", from)}
}

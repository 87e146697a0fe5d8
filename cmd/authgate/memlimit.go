package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"

	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/cache"
)

// ownsProcess is set by main: serve may then change process-wide runtime
// settings (the Go memory limit). Tests that run serve in their own
// process leave it false.
var ownsProcess bool

// memoryHeadroom is what the derived memory limit allows beyond the
// caches' byte budget: the runtime, the binary's data, connections and
// requests in flight, and the bounded state kept outside the caches
// (federation.last_login_max, the negative cache, the usage batch's
// sketches).
const memoryHeadroom = 64 << 20

// containerShare is the part of the container's memory limit that the Go
// runtime's soft limit may take. The rest is for what the runtime does
// not count but the container's limit does (the binary's pages, the
// kernel's socket buffers) and for the collector to catch up before the
// kernel's OOM killer acts.
const containerShare = 0.9

// cgroupRoot is where the process's cgroup file systems are mounted; in a
// container, its own cgroup is mounted there.
const cgroupRoot = "/sys/fs/cgroup"

// memoryLimit is the Go runtime's soft memory limit without GOMEMLIMIT,
// and where it came from. The in-process tier's budget (maxBytes) is
// partly outside the Go heap, in its arena's rings (cache.OffHeapBytes),
// which the runtime's limit does not count: the limit is the rest of the
// budget plus memoryHeadroom, so that the heap, whose garbage GOGC alone
// lets grow to twice what is live, stays near the budget the operator set;
// but at most containerShare of the container's memory limit (0: none
// found), less the rings, which the container's limit does count. over is
// set when the budget had to give way to the container's limit.
func memoryLimit(budget, container int64) (limit int64, from string, over bool) {
	offHeap := cache.OffHeapBytes(budget)
	limit, from = budget-offHeap+memoryHeadroom, "cache.local_max_bytes"
	if container > 0 {
		if c := int64(float64(container)*containerShare) - offHeap; c < limit {
			return max(c, memoryHeadroom/2), "container memory limit", true
		}
	}
	return limit, from, false
}

// containerMemoryLimit reads the memory limit of the cgroup the process
// runs in under root (cgroup v2's memory.max, else v1's
// memory/memory.limit_in_bytes): in a container, its own limit. It
// returns 0 when there is none ("max", or v1's huge "unlimited").
func containerMemoryLimit(root string) int64 {
	for _, f := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		s := string(bytes.TrimSpace(b))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		// cgroup v1 writes "no limit" as the largest page-aligned int64.
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0
		}
		return n
	}
	return 0
}

// memoryLimitFields sets the Go runtime's soft memory limit when serve owns
// the process, and returns it and where it came from as fields of the
// "listening" log line (none otherwise), with a warning for log when the
// caches' budget does not fit the container. GOMEMLIMIT, when set, is the
// operator's number and the runtime already applies it. Otherwise see
// memoryLimit. It is a soft limit: a process whose live heap exceeds it
// keeps running, the collector taking at most about half the CPU.
func memoryLimitFields(environ []string, budget int64, log *zap.Logger) []zap.Field {
	if !ownsProcess {
		return nil
	}
	limit, from := debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	if lookupEnv(environ, "GOMEMLIMIT") == "" {
		container := containerMemoryLimit(cgroupRoot)
		var over bool
		limit, from, over = memoryLimit(budget, container)
		if over {
			log.Warn("cache.local_max_bytes plus 64 MiB does not fit in 90 % of the container's memory limit: the Go memory limit is lowered to fit, and full caches will keep the collector busy; lower cache.local_max_bytes or raise the container's limit",
				zap.Int64("local_max_bytes", budget), zap.Int64("container_memory_limit_bytes", container), zap.Int64("memory_limit_bytes", limit))
		}
		debug.SetMemoryLimit(limit)
	}
	return []zap.Field{zap.Int64("memory_limit_bytes", limit), zap.String("memory_limit_from", from)}
}

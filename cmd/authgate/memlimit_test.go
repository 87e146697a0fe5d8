package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/authgate/authgate/internal/cache"
)

// TestContainerMemoryLimit reads the limit as cgroup v2 and v1 write it,
// and finds none where there is none.
func TestContainerMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"v2 limit", map[string]string{"memory.max": "268435456\n"}, 256 << 20},
		{"v2 no limit", map[string]string{"memory.max": "max\n"}, 0},
		{"v1 limit", map[string]string{"memory/memory.limit_in_bytes": "134217728\n"}, 128 << 20},
		{"v1 no limit", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"v2 before v1", map[string]string{"memory.max": "268435456", "memory/memory.limit_in_bytes": "134217728"}, 256 << 20},
		{"garbage", map[string]string{"memory.max": "lots\n"}, 0},
		{"no cgroup files", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, body := range tc.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := containerMemoryLimit(root); got != tc.want {
				t.Errorf("containerMemoryLimit = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestMemoryLimit checks the derived limit: the budget's part on the Go
// heap plus headroom, but never more than 90 % of the container's limit
// less the budget's part outside the heap, saying which won.
func TestMemoryLimit(t *testing.T) {
	const budget = 64 << 20
	off := cache.OffHeapBytes(budget)
	if off <= 0 || off >= budget {
		t.Fatalf("OffHeapBytes(%d) = %d, want a part of it", budget, off)
	}
	for _, tc := range []struct {
		name              string
		budget, container int64
		want              int64
		from              string
		over              bool
	}{
		{"no container limit", budget, 0, budget - off + memoryHeadroom, "cache.local_max_bytes", false},
		{"room in the container", budget, 512 << 20, budget - off + memoryHeadroom, "cache.local_max_bytes", false},
		{"container smaller", budget, 120 << 20, 108<<20 - off, "container memory limit", true},
		{"container far too small", budget, 64 << 20, memoryHeadroom / 2, "container memory limit", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from, over := memoryLimit(tc.budget, tc.container)
			if got != tc.want || from != tc.from || over != tc.over {
				t.Errorf("memoryLimit(%d, %d) = %d, %q, %v; want %d, %q, %v", tc.budget, tc.container, got, from, over, tc.want, tc.from, tc.over)
			}
		})
	}
}

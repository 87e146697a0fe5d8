//go:build unix

package cache

import (
	"fmt"
	"syscall"
)

// mmapBytes returns n bytes of anonymous private memory from the kernel,
// outside the Go heap: the collector neither scans nor counts them, and
// they take physical memory only as they are written.
func mmapBytes(n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("in-process tier: map %d bytes: %w", n, err)
	}
	return b, nil
}

// munmapBytes returns what mmapBytes mapped.
func munmapBytes(b []byte) {
	if len(b) > 0 {
		_ = syscall.Munmap(b)
	}
}

//go:build !unix

package cache

// mmapBytes is a plain slice where there is no mmap: the collector does
// not scan it (it holds no pointers) but counts it.
func mmapBytes(n int) ([]byte, error) { return make([]byte, n), nil }

func munmapBytes([]byte) {}

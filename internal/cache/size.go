package cache

import (
	"math"
	"reflect"
	"unsafe"
)

// entryOverhead is what an entry of a Local costs beyond its key's bytes
// and its item: the store's node (links, expiry, weight, the key's and the
// value's headers), its hash-table slot and its share of the frequency
// sketch and of the table's spare room. Measured with TestLocalHeapBudget
// (the heap per entry of a full store, less the parts weigh counts).
const entryOverhead = 134

// weigh estimates the heap bytes the entry it holds in a Local.
func weigh[V any](it *item[V]) uint32 {
	n := entryOverhead + allocSize(len(it.key)) + allocSize(int(unsafe.Sizeof(*it))) + heapBytes(reflect.ValueOf(&it.v).Elem())
	return uint32(min(n, math.MaxUint32))
}

// heapBytes estimates the heap that v points to, outside v itself:
// string bytes, slice arrays, maps and boxed interface values, and what
// they point to in turn. Pointers are not followed: what they point to
// (a *time.Location, say) is taken to be shared.
func heapBytes(v reflect.Value) int {
	switch v.Kind() {
	case reflect.String:
		return allocSize(v.Len())
	case reflect.Struct:
		n := 0
		for i := range v.NumField() {
			n += heapBytes(v.Field(i))
		}
		return n
	case reflect.Array:
		if !hasHeap(v.Type().Elem()) {
			return 0
		}
		n := 0
		for i := range v.Len() {
			n += heapBytes(v.Index(i))
		}
		return n
	case reflect.Slice:
		if v.IsNil() {
			return 0
		}
		n := allocSize(v.Cap() * int(v.Type().Elem().Size()))
		if hasHeap(v.Type().Elem()) {
			for i := range v.Len() {
				n += heapBytes(v.Index(i))
			}
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return 0
		}
		n := mapBytes(v.Len(), int(v.Type().Key().Size()+v.Type().Elem().Size()))
		if hasHeap(v.Type().Key()) || hasHeap(v.Type().Elem()) {
			it := v.MapRange()
			for it.Next() {
				n += heapBytes(it.Key()) + heapBytes(it.Value())
			}
		}
		return n
	case reflect.Interface:
		if v.IsNil() {
			return 0
		}
		e := v.Elem()
		n := heapBytes(e)
		switch e.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer:
			// Stored in the interface word itself.
		default:
			if sz := int(e.Type().Size()); sz > 0 {
				n += allocSize(sz)
			}
		}
		return n
	}
	return 0
}

// hasHeap reports whether a value of t may point to heap that heapBytes
// counts.
func hasHeap(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Interface:
		return true
	case reflect.Struct:
		for i := range t.NumField() {
			if hasHeap(t.Field(i).Type) {
				return true
			}
		}
	case reflect.Array:
		return hasHeap(t.Elem())
	}
	return false
}

// mapBytes estimates a Go map of n entries of slotSize bytes each: its
// header, and groups of 8 slots with a control word, filled to at most
// 7/8 and grown by doubling.
func mapBytes(n, slotSize int) int {
	const header = 48
	if n == 0 {
		return allocSize(header)
	}
	groups := 1
	for groups*8*7/8 < n && groups > 0 {
		groups *= 2
	}
	if groups == 1 && n <= 8 {
		return allocSize(header) + allocSize(8+8*slotSize)
	}
	return allocSize(header) + allocSize(48) + allocSize(groups*(8+8*slotSize))
}

// sizeClasses are the Go allocator's size classes up to 32 KiB
// (runtime/sizeclasses.go); larger objects take whole 8 KiB pages.
var sizeClasses = [...]int{
	8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280,
	1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528,
	6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072,
	20480, 21760, 24576, 27264, 28672, 32768,
}

// allocSize is the heap an allocation of n bytes takes.
func allocSize(n int) int {
	if n <= 0 {
		return 0
	}
	if n > sizeClasses[len(sizeClasses)-1] {
		return (n + 8191) &^ 8191
	}
	lo, hi := 0, len(sizeClasses)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if sizeClasses[mid] < n {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return sizeClasses[lo]
}

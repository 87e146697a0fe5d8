package usage

import (
	"math"
	"slices"
)

// hll counts distinct users in memory of a fixed size, whatever their
// number: memStore's stand-in for a Redis HyperLogLog (PFADD, PFCOUNT).
//
// A set starts sparse, the sorted 64-bit hashes (hashUser) of its users:
// an exact count (short of a hash collision, about n²/2⁶⁵). Past
// hllSparseMax hashes, as many bytes as the dense form, or once a sketch
// is merged in, it turns dense: the registers of a sketch, those of a
// Redis HyperLogLog of the same users. The count is then Redis's PFCOUNT
// of those registers, an estimate with a standard error of
// 1.04/√16384 ≈ 0.81 %.
type hll struct {
	sparse []uint64 // sorted distinct hashes; nil once dense
	dense  *sketch  // nil while sparse
}

const (
	hllP = 14        // bits of a hash that pick a register
	hllM = 1 << hllP // registers
	hllQ = 64 - hllP // bits of a hash left for the rank
	// hllSparseMax is the most hashes a sparse set holds: 16 KiB, as
	// many bytes as the registers.
	hllSparseMax = hllM / 8
)

// add counts the user of hash x.
func (h *hll) add(x uint64) {
	if h.dense != nil {
		h.set(x)
		return
	}
	i, found := slices.BinarySearch(h.sparse, x)
	switch {
	case found:
	case len(h.sparse) < hllSparseMax:
		if len(h.sparse) == cap(h.sparse) {
			// Grow by doubling up to hllSparseMax exactly, not past it.
			grown := make([]uint64, len(h.sparse), min(max(2*cap(h.sparse), 8), hllSparseMax))
			copy(grown, h.sparse)
			h.sparse = grown
		}
		h.sparse = slices.Insert(h.sparse, i, x)
	default:
		h.densify()
		h.set(x)
	}
}

// set raises the register of x to x's rank. h is dense.
func (h *hll) set(x uint64) { h.dense.add(x) }

// densify turns h dense.
func (h *hll) densify() {
	h.dense = new(sketch)
	for _, x := range h.sparse {
		h.set(x)
	}
	h.sparse = nil
}

// mergeDense adds to h the users of b, a HyperLogLog in Redis's dense
// format (sketch.appendDense). h turns dense.
func (h *hll) mergeDense(b []byte) error {
	var d *sketch
	if h.dense == nil {
		d = new(sketch)
		for _, x := range h.sparse {
			d.add(x)
		}
	} else {
		d = h.dense
	}
	if err := d.mergeDense(b); err != nil {
		return err
	}
	h.dense, h.sparse = d, nil
	return nil
}

// merge adds the users of o to h, as PFCOUNT of several keys does: the
// union of sparse sets while it stays small, else the register-wise max.
func (h *hll) merge(o *hll) {
	switch {
	case o.dense != nil:
		if h.dense == nil {
			h.densify()
		}
		h.dense.merge(o.dense)
	case h.dense != nil:
		for _, x := range o.sparse {
			h.set(x)
		}
	default:
		u := make([]uint64, 0, len(h.sparse)+len(o.sparse))
		a, b := h.sparse, o.sparse
		for len(a) > 0 && len(b) > 0 {
			switch {
			case a[0] < b[0]:
				u, a = append(u, a[0]), a[1:]
			case a[0] > b[0]:
				u, b = append(u, b[0]), b[1:]
			default:
				u, a, b = append(u, a[0]), a[1:], b[1:]
			}
		}
		u = append(append(u, a...), b...)
		h.sparse = u
		if len(u) > hllSparseMax {
			h.densify()
		}
	}
}

// count is the number of distinct users: exact while sparse, else Ertl's
// estimator ("New cardinality estimation algorithms for HyperLogLog
// sketches", 2017), which needs no bias tables nor a switch to linear
// counting for small numbers, and which Redis's PFCOUNT uses too (since
// Redis 5): the same registers give the same count.
func (h *hll) count() int64 {
	if h.dense == nil {
		return int64(len(h.sparse))
	}
	var c [hllQ + 2]int // registers per value
	for _, r := range h.dense {
		c[r]++
	}
	if c[0] == hllM {
		return 0
	}
	const m = float64(hllM)
	z := m * hllTau(1-float64(c[hllQ+1])/m)
	for k := hllQ; k >= 1; k-- {
		z = 0.5 * (z + float64(c[k]))
	}
	z += m * hllSigma(float64(c[0])/m)
	return int64(math.Round(m * m / (2 * math.Ln2 * z)))
}

// size is the bytes h holds.
func (h *hll) size() int {
	if h.dense != nil {
		return len(h.dense)
	}
	return 8 * cap(h.sparse)
}

// hllSigma is σ(x) = x + Σ_{k≥1} x^(2^k)·2^(k-1), for x < 1.
func hllSigma(x float64) float64 {
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
}

// hllTau is τ(x) = (1 - x - Σ_{k≥1} (1 - x^(2^-k))²·2^-k) / 3.
func hllTau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
}

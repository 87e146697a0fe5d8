package usage

import (
	"errors"
	"math/bits"
)

// sketch is the registers of a Redis HyperLogLog: hllM registers, each
// the highest rank seen among the hashes that pick it. Its registers are
// those that PFADD of the same elements leaves in Redis (src/hyperloglog.c,
// unchanged since Redis 2.8.9, and Valkey), so that a sketch merged into a
// key (PFMERGE) counts a user that another replica PFADDed as one user.
//
// A sketch is 16 KiB however many users it holds: one byte per register,
// though Redis stores 6 bits.
type sketch [hllM]uint8

// hllSeed is the seed of Redis's MurmurHash64A for HyperLogLog elements.
const hllSeed = 0xadc83b19

// hashUser is the 64-bit hash that Redis gives the element s in a
// HyperLogLog: MurmurHash64A with Redis's seed. It does not allocate.
func hashUser(s string) uint64 {
	const (
		m = 0xc6a4a7935bd1e995
		r = 47
	)
	h := hllSeed ^ uint64(len(s))*m
	for ; len(s) >= 8; s = s[8:] {
		// Eight bytes, little-endian, as Redis reads them on any host.
		k := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		k *= m
		k ^= k >> r
		k *= m
		h ^= k
		h *= m
	}
	if len(s) > 0 {
		for i := len(s) - 1; i >= 0; i-- {
			h ^= uint64(s[i]) << (8 * i)
		}
		h *= m
	}
	h ^= h >> r
	h *= m
	h ^= h >> r
	return h
}

// register is where Redis puts the hash x: its low hllP bits pick the
// register, and the rank is one more than the trailing zeros of the rest,
// at most hllQ+1 (a bit set above the hllQ bits stops the count).
func register(x uint64) (index int, rank uint8) {
	return int(x & (hllM - 1)), uint8(bits.TrailingZeros64(x>>hllP|1<<hllQ)) + 1
}

// add counts the element of hash x.
func (s *sketch) add(x uint64) {
	j, r := register(x)
	if r > s[j] {
		s[j] = r
	}
}

// merge adds the elements of o to s: the register-wise max.
func (s *sketch) merge(o *sketch) {
	for j, r := range o {
		s[j] = max(s[j], r)
	}
}

// Redis's dense HyperLogLog string: a 16-byte header, then the registers, 6
// bits each, register i at bits 6i..6i+5 of the string read as one
// little-endian number (least significant bit of each byte first).
const (
	hllHeaderLen = 16
	hllDenseLen  = hllHeaderLen + hllM*6/8
)

var errNotDense = errors.New("not a dense HyperLogLog of 16384 registers")

// appendDense appends s in Redis's dense format. The cached cardinality is
// marked invalid (the high bit of its last byte), so that Redis counts the
// registers, whatever a merge made of them.
func (s *sketch) appendDense(b []byte) []byte {
	b = append(b, 'H', 'Y', 'L', 'L', 0 /* dense */, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1<<7)
	for j := 0; j < hllM; j += 4 {
		v := uint32(s[j]) | uint32(s[j+1])<<6 | uint32(s[j+2])<<12 | uint32(s[j+3])<<18
		b = append(b, byte(v), byte(v>>8), byte(v>>16))
	}
	return b
}

// mergeDense adds to s the registers of b, a HyperLogLog in Redis's dense
// format. Ranks above hllQ+1, which no hash gives, count as hllQ+1.
func (s *sketch) mergeDense(b []byte) error {
	if len(b) != hllDenseLen || string(b[:4]) != "HYLL" || b[4] != 0 {
		return errNotDense
	}
	regs := b[hllHeaderLen:]
	for j := 0; j < hllM; j += 4 {
		v := uint32(regs[0]) | uint32(regs[1])<<8 | uint32(regs[2])<<16
		regs = regs[3:]
		for i := range 4 {
			r := min(uint8(v>>(6*i))&63, hllQ+1)
			s[j+i] = max(s[j+i], r)
		}
	}
	return nil
}

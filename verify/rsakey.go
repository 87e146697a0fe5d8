package verify

import (
	"crypto"
	"crypto/rsa"
	"sync"

	"filippo.io/bigmod"
)

// rsaKey is an RSA public key with its modulus prepared, once when the key
// is loaded, for RSASSA-PKCS1-v1_5 checks.
//
// crypto/rsa prepares the modulus (its Montgomery constants) again on every
// VerifyPKCS1v15 and has no way to keep it: about a third of a 2048-bit
// check, and a tenth of the CPU a new token costs the server (issue 13).
// filippo.io/bigmod is the same constant-time arithmetic the standard
// library uses inside, published by its author, so the check below is the
// standard library's own (RFC 8017 §8.2.2: s < n, s^e mod n, compared with
// the one encoding the digest has) on a modulus prepared ahead.
type rsaKey struct {
	pub *rsa.PublicKey
	// n is nil for keys the standard library alone decides on: moduli it
	// refuses (under 1024 bits, even) and exponents it refuses.
	n *bigmod.Modulus
}

// newRSAKey prepares pub. It never fails: a key the fast path does not take
// is checked, and refused where it must be, by crypto/rsa as before.
func newRSAKey(pub *rsa.PublicKey) *rsaKey {
	k := &rsaKey{pub: pub}
	if pub.N == nil || pub.N.BitLen() < 1024 || pub.N.Bit(0) == 0 ||
		pub.E < 3 || pub.E&1 == 0 || pub.E > 1<<31-1 {
		return k // crypto/rsa's own limits, left for it to report
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err == nil {
		k.n = n
	}
	return k
}

// prepareKey is k with an RSA key prepared; other keys are returned as is.
func prepareKey(k any) any {
	if pub, ok := k.(*rsa.PublicKey); ok {
		return newRSAKey(pub)
	}
	return k
}

// publicOf is the crypto.PublicKey of a key prepareKey returned.
func publicOf(k any) any {
	if rk, ok := k.(*rsaKey); ok {
		return rk.pub
	}
	return k
}

// pkcs1Prefixes is the DER DigestInfo prefix of each hash an RS algorithm
// uses (RFC 8017 §9.2, note 1).
var pkcs1Prefixes = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// nats recycles the two numbers of a check.
var nats = sync.Pool{New: func() any { return &[2]*bigmod.Nat{bigmod.NewNat(), bigmod.NewNat()} }}

// verifyPKCS1v15 reports whether sig is a PKCS #1 v1.5 signature by k of
// digest, a hash h of the signed data.
func (k *rsaKey) verifyPKCS1v15(h crypto.Hash, digest, sig []byte) bool {
	prefix, ok := pkcs1Prefixes[h]
	if k.n == nil || !ok {
		return rsa.VerifyPKCS1v15(k.pub, h, digest, sig) == nil
	}
	size := k.n.Size()
	if len(sig) != size || len(digest) != h.Size() || size < len(prefix)+len(digest)+11 {
		return false
	}
	ns := nats.Get().(*[2]*bigmod.Nat)
	defer nats.Put(ns)
	s, err := ns[0].SetBytes(sig, k.n) // refuses s >= n
	if err != nil {
		return false
	}
	em := ns[1].ExpShortVarTime(s, uint(k.pub.E), k.n).Bytes(k.n)
	// EM = 0x00 || 0x01 || PS (0xff, at least 8) || 0x00 || prefix || digest
	t := size - len(prefix) - len(digest)
	if em[0] != 0 || em[1] != 1 || em[t-1] != 0 {
		return false
	}
	for _, b := range em[2 : t-1] {
		if b != 0xff {
			return false
		}
	}
	return string(em[t:t+len(prefix)]) == string(prefix) && string(em[t+len(prefix):]) == string(digest)
}

package verify

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"math/big"
	"sync"
	"testing"
)

// rsaTestKeys are generated once: a 4096-bit key takes seconds.
var rsaTestKeys = sync.OnceValue(func() map[int]*rsa.PrivateKey {
	out := map[int]*rsa.PrivateKey{}
	for _, bits := range []int{1024, 2048, 3072} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		out[bits] = k
	}
	return out
})

// signEM is the raw RSA signature of the encoded message em under priv,
// for encodings a signer would never make.
func signEM(priv *rsa.PrivateKey, em []byte) []byte {
	s := new(big.Int).Exp(new(big.Int).SetBytes(em), priv.D, priv.N)
	return s.FillBytes(make([]byte, priv.Size()))
}

// pkcs1EM is the PKCS #1 v1.5 encoding of digest under h for a key of size
// bytes, which tests then spoil.
func pkcs1EM(size int, h crypto.Hash, digest []byte) []byte {
	prefix := pkcs1Prefixes[h]
	em := make([]byte, size)
	em[1] = 1
	t := size - len(prefix) - len(digest)
	for i := 2; i < t-1; i++ {
		em[i] = 0xff
	}
	copy(em[t:], prefix)
	copy(em[t+len(prefix):], digest)
	return em
}

// TestRSAKeyAgreesWithStandardLibrary checks the prepared key against
// crypto/rsa, the oracle, on real signatures and on every way to spoil
// one: a check that says yes where crypto/rsa says no is a forgery.
func TestRSAKeyAgreesWithStandardLibrary(t *testing.T) {
	for bits, priv := range rsaTestKeys() {
		pub := &priv.PublicKey
		k := newRSAKey(pub)
		if k.n == nil {
			t.Fatalf("%d-bit key: not prepared", bits)
		}
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			hh := h.New()
			hh.Write([]byte("header.payload"))
			digest := hh.Sum(nil)
			sig, err := rsa.SignPKCS1v15(nil, priv, h, digest)
			if err != nil {
				t.Fatal(err)
			}
			size := priv.Size()
			n := priv.N.FillBytes(make([]byte, size))
			nMinus1 := new(big.Int).Sub(priv.N, big.NewInt(1)).FillBytes(make([]byte, size))
			spoilEM := func(f func(em []byte) []byte) []byte {
				return signEM(priv, f(pkcs1EM(size, h, digest)))
			}
			other := append([]byte(nil), digest...)
			other[0] ^= 1
			cases := []struct {
				name   string
				digest []byte
				sig    []byte
				want   bool
			}{
				{"valid", digest, sig, true},
				{"valid, encoded here", digest, spoilEM(func(em []byte) []byte { return em }), true},
				{"other digest", other, sig, false},
				{"first byte flipped", digest, flip(sig, 0), false},
				{"middle byte flipped", digest, flip(sig, size/2), false},
				{"last byte flipped", digest, flip(sig, size-1), false},
				{"one byte short", digest, sig[1:], false},
				{"leading zero added", digest, append([]byte{0}, sig...), false},
				{"empty", digest, nil, false},
				{"zero", digest, make([]byte, size), false},
				{"one", digest, append(make([]byte, size-1), 1), false},
				{"n", digest, n, false},
				{"n-1", digest, nMinus1, false},
				{"all ones", digest, bytes.Repeat([]byte{0xff}, size), false},
				{"sig+n", digest, new(big.Int).Add(new(big.Int).SetBytes(sig), priv.N).FillBytes(make([]byte, size+1))[1:], false},
				{"block type 2", digest, spoilEM(func(em []byte) []byte { em[1] = 2; return em }), false},
				{"leading byte 1", digest, spoilEM(func(em []byte) []byte { em[0] = 1; return em }), false},
				{"padding byte not ff", digest, spoilEM(func(em []byte) []byte { em[5] = 0xfe; return em }), false},
				{"no zero after padding", digest, spoilEM(func(em []byte) []byte {
					em[size-len(pkcs1Prefixes[h])-len(digest)-1] = 0xff
					return em
				}), false},
				{"padding 7 bytes, digest shifted", digest, spoilEM(func(em []byte) []byte {
					// 00 01 ff×7 00 T, then garbage: a short PS and trailing data.
					t := append([]byte{0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0}, pkcs1Prefixes[h]...)
					t = append(t, digest...)
					copy(em, t)
					return em
				}), false},
				{"prefix names another hash", digest, spoilEM(func(em []byte) []byte {
					em[size-len(digest)-5] ^= 0x03 // the OID's last byte: 1 SHA-256, 2 SHA-384, 3 SHA-512
					return em
				}), false},
				{"digest length byte wrong", digest, spoilEM(func(em []byte) []byte {
					em[size-len(digest)-1]++
					return em
				}), false},
			}
			for _, c := range cases {
				want := rsa.VerifyPKCS1v15(pub, h, c.digest, c.sig) == nil
				if want != c.want {
					t.Fatalf("%d/%v/%s: crypto/rsa says %v, the case expects %v", bits, h, c.name, want, c.want)
				}
				if got := k.verifyPKCS1v15(h, c.digest, c.sig); got != want {
					t.Errorf("%d/%v/%s: prepared key says %v, crypto/rsa %v", bits, h, c.name, got, want)
				}
			}
		}
	}
}

// TestRSAKeyRefusesShortSpelling: a signature whose first byte is zero
// has a shorter spelling of the same number, which RFC 8017 refuses (the
// signature must be exactly as long as the modulus) and so must we.
func TestRSAKeyRefusesShortSpelling(t *testing.T) {
	priv := rsaTestKeys()[1024]
	k := newRSAKey(&priv.PublicKey)
	for i := 0; ; i++ {
		if i == 10000 {
			t.Fatal("no signature with a leading zero byte in 10 000 tries")
		}
		digest := sha256.Sum256(binary.BigEndian.AppendUint32(nil, uint32(i)))
		sig, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if sig[0] != 0 {
			continue
		}
		if !k.verifyPKCS1v15(crypto.SHA256, digest[:], sig) {
			t.Fatal("full-length signature refused")
		}
		if k.verifyPKCS1v15(crypto.SHA256, digest[:], sig[1:]) {
			t.Fatal("signature without its leading zero byte accepted")
		}
		return
	}
}

// TestRSAKeyLeavesRefusedKeysToStandardLibrary: keys crypto/rsa refuses
// (too small, even exponent) are not prepared, so they stay refused with
// crypto/rsa's own checks.
func TestRSAKeyLeavesRefusedKeysToStandardLibrary(t *testing.T) {
	p, err := rand.Prime(rand.Reader, 256)
	if err != nil {
		t.Fatal(err)
	}
	q, err := rand.Prime(rand.Reader, 256)
	if err != nil {
		t.Fatal(err)
	}
	big2048 := rsaTestKeys()[2048]
	for name, pub := range map[string]*rsa.PublicKey{
		"512-bit modulus":  {N: new(big.Int).Mul(p, q), E: 65537},
		"even exponent":    {N: big2048.N, E: 65536},
		"exponent 1":       {N: big2048.N, E: 1},
		"exponent too big": {N: big2048.N, E: 1 << 31},
		"even modulus":     {N: new(big.Int).Lsh(big2048.N, 1), E: 65537},
	} {
		k := newRSAKey(pub)
		if k.n != nil {
			t.Errorf("%s: prepared", name)
		}
		digest := make([]byte, 32)
		if k.verifyPKCS1v15(crypto.SHA256, digest, make([]byte, (pub.N.BitLen()+7)/8)) {
			t.Errorf("%s: zero signature accepted", name)
		}
	}
}

// FuzzRSAKeyEncoding signs arbitrary encoded messages with a 1024-bit key
// and checks that the prepared key and crypto/rsa agree on each.
func FuzzRSAKeyEncoding(f *testing.F) {
	priv := rsaTestKeys()[1024]
	size := priv.Size()
	digest := make([]byte, 32)
	for i := range digest {
		digest[i] = byte(i)
	}
	f.Add(pkcs1EM(size, crypto.SHA256, digest))
	f.Add(pkcs1EM(size, crypto.SHA512, digest))
	f.Add([]byte{0, 1, 0xff, 0})
	k := newRSAKey(&priv.PublicKey)
	f.Fuzz(func(t *testing.T, em []byte) {
		// Fit em to the key's size with a zero first byte, so it is < n and
		// the signature is exactly what a signer of em would send; keep the
		// fuzzer's bytes at the end, where the digest sits.
		buf := make([]byte, size)
		if len(em) > size {
			em = em[len(em)-size:]
		}
		copy(buf[size-len(em):], em)
		buf[0] = 0
		sig := signEM(priv, buf)
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA512} {
			d := buf[size-h.Size():]
			want := rsa.VerifyPKCS1v15(&priv.PublicKey, h, d, sig) == nil
			if got := k.verifyPKCS1v15(h, d, sig); got != want {
				t.Fatalf("%v: prepared key says %v, crypto/rsa %v for EM %x", h, got, want, buf)
			}
		}
	})
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x40
	return out
}

package verify_test

import (
	"testing"

	"github.com/authgate/authgate/verify"
)

// BenchmarkVerifyLegacyHS256 is one uncached verification of a valid HS256
// token: parse, header and lifetime checks, HMAC, identity.
func BenchmarkVerifyLegacyHS256(b *testing.B) {
	v := newVerifier(b, legacyConfig())
	tok := hs256(b, claimsWith())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyLegacyHS256Parallel is the same under contention, which is
// mostly the metric counters.
func BenchmarkVerifyLegacyHS256Parallel(b *testing.B) {
	v := newVerifier(b, legacyConfig())
	tok := hs256(b, claimsWith())
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyLegacyRejected measures refusals, which an attacker can
// send as fast as they like.
func BenchmarkVerifyLegacyRejected(b *testing.B) {
	v := newVerifier(b, legacyConfig())
	valid := hs256(b, claimsWith())
	benchmarks := []struct {
		name      string
		giveToken string
	}{
		{name: "forged", giveToken: withPayload(b, valid, claimsWith("sub", "admin"))},
		{name: "malformed", giveToken: "not-a-token"},
		{name: "oversized", giveToken: string(make([]byte, verify.MaxTokenBytes+1))},
	}
	for _, bb := range benchmarks {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(b.Context(), bb.giveToken); err == nil {
					b.Fatal("Verify() error = nil, want an error")
				}
			}
		})
	}
}

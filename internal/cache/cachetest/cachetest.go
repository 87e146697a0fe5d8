// Package cachetest gives integration tests the Redis at TEST_REDIS_URL
// under a key prefix of their own.
package cachetest

import (
	"context"
	"fmt"
	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/internal/cache"
)

// Redis returns the configuration of the Redis at TEST_REDIS_URL with a key
// prefix of the test's own (under scope, such as the package name), and a
// plain client to inspect what was stored. It skips the test when
// TEST_REDIS_URL is unset or with -short, and fails it when Redis does not
// answer. The keys under the prefix are deleted and the client closed when
// the test ends.
func Redis(tb testing.TB, scope string) (cache.RedisConfig, *redis.Client) {
	tb.Helper()
	raw := os.Getenv("TEST_REDIS_URL")
	if raw == "" {
		tb.Skip("TEST_REDIS_URL not set; skipping Redis integration test (e.g. TEST_REDIS_URL=redis://127.0.0.1:6379/0)")
	}
	if testing.Short() {
		tb.Skip("-short: skipping Redis integration test")
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		tb.Fatalf("TEST_REDIS_URL: %v", err)
	}
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		tb.Fatalf("TEST_REDIS_URL is set but Redis does not answer: %v", err)
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, tb.Name())
	prefix := fmt.Sprintf("authgate-test:%s:%s:%d:", scope, name, time.Now().UnixNano())
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		client.Close()
	})
	return configtest.Fill(cache.RedisConfig{
		Addrs:     []string{opts.Addr},
		DB:        opts.DB,
		Username:  opts.Username,
		Password:  secret.Secret(opts.Password),
		KeyPrefix: prefix,
	}, cache.DefaultRedisConfig()), client
}

// BinaryRoundTrip encodes v with b and returns what Read decodes from the
// encoding. It fails the test when Append refuses v or Read fails, and
// when Read accepts any proper prefix of the encoding: a cut entry must
// never decode.
func BinaryRoundTrip[V any](tb testing.TB, b cache.Binary[V], v V) V {
	tb.Helper()
	enc, ok := b.Append(nil, v)
	if !ok {
		tb.Fatalf("%T.Append(%+v) = false", b, v)
	}
	back, err := b.Read(enc)
	if err != nil {
		tb.Fatalf("%T.Read: %v", b, err)
	}
	for n := range len(enc) {
		if _, err := b.Read(enc[:n]); err == nil {
			tb.Errorf("%T.Read of the first %d of %d bytes succeeded, want an error", b, n, len(enc))
		}
	}
	return back
}

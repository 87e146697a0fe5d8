package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// KeySetConfig configures a set of public keys fetched from a URL.
type KeySetConfig struct {
	// URL serves the keys: either Google's x509 format (a JSON object of
	// kid → PEM certificate or public key) or a JWKS ({"keys": [...]}). The
	// format is recognised from the document.
	URL string `yaml:"url"`
	// FetchTimeout bounds one fetch. Default 5s; at least 1ms.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// MinRefreshInterval is the least time between two fetches caused by
	// tokens with an unknown kid, so that a flood of made-up kids cannot
	// become a flood of fetches. Default 30s; 0 lets every unknown kid
	// fetch (one fetch at a time still).
	MinRefreshInterval time.Duration `yaml:"min_refresh_interval"`
	// DefaultMaxAge is how long keys are fresh when the response has no
	// Cache-Control max-age. Default 1h; at least 1s.
	DefaultMaxAge time.Duration `yaml:"default_max_age"`
	// MaxStale is how long the last good keys stay in use after they
	// should have been refreshed, while the endpoint fails. Past it,
	// verification answers ErrKeysUnavailable. Default 24h; 0 keeps none
	// past their max-age.
	MaxStale time.Duration `yaml:"max_stale"`
}

// DefaultKeySetConfig returns the key-set defaults, without a URL.
func DefaultKeySetConfig() KeySetConfig {
	return KeySetConfig{
		FetchTimeout:       5 * time.Second,
		MinRefreshInterval: 30 * time.Second,
		DefaultMaxAge:      time.Hour,
		MaxStale:           24 * time.Hour,
	}
}

// keySetAt returns the defaults for url.
func keySetAt(url string) KeySetConfig {
	c := DefaultKeySetConfig()
	c.URL = url
	return c
}

// Validate reports every problem, each prefixed with its key.
func (c KeySetConfig) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.URL, "https://") && !strings.HasPrefix(c.URL, "http://") {
		errs = append(errs, fmt.Errorf("url: %q must be an http(s) URL", c.URL))
	}
	for _, d := range []struct {
		key      string
		v, least time.Duration
	}{
		{"fetch_timeout", c.FetchTimeout, time.Millisecond},
		{"min_refresh_interval", c.MinRefreshInterval, 0},
		{"default_max_age", c.DefaultMaxAge, time.Second},
		{"max_stale", c.MaxStale, 0},
	} {
		if d.v < d.least {
			errs = append(errs, fmt.Errorf("%s: %s is less than %s", d.key, d.v, d.least))
		}
	}
	return errors.Join(errs...)
}

// publicKey is one verification key with the algorithm its document
// declared, if any.
type publicKey struct {
	key any
	alg string
}

// keySnapshot is one successful fetch; it is never modified once stored.
type keySnapshot struct {
	keys      map[string]publicKey
	fetchedAt time.Time
	freshTill time.Time // fetchedAt + max-age
}

// keySet holds the current keys of one URL. Lookups never block on the
// network except when there are no keys at all yet, or a kid is unknown and
// the last fetch is older than MinRefreshInterval.
type keySet struct {
	name   string
	cfg    KeySetConfig
	client *http.Client
	now    func() time.Time
	log    *zap.Logger
	m      *keySetMetrics

	snap atomic.Pointer[keySnapshot]

	fetchMu     sync.Mutex // one fetch at a time
	lastAttempt atomic.Int64
	// last is the outcome of the last fetch that finished; nil before
	// the first.
	last atomic.Pointer[fetchResult]
}

// fetchResult is the outcome of one fetch: when it started, and its error.
type fetchResult struct {
	at  time.Time
	err error
}

type keySetMetrics struct {
	ok, failed prometheus.Counter
}

func newKeySet(name string, cfg KeySetConfig, now func() time.Time, log *zap.Logger, m *verifyMetrics) *keySet {
	dialer := &net.Dialer{Timeout: cfg.FetchTimeout}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.FetchTimeout,
		ResponseHeaderTimeout: cfg.FetchTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          2,
	}
	k := &keySet{
		name:   name,
		cfg:    cfg,
		client: &http.Client{Transport: transport, Timeout: cfg.FetchTimeout},
		now:    now,
		log:    log.With(zap.String("keyset", name)),
	}
	if m != nil {
		k.m = &keySetMetrics{
			ok:     m.keyRefresh.WithLabelValues(name, "ok"),
			failed: m.keyRefresh.WithLabelValues(name, "error"),
		}
	}
	return k
}

// errUnknownKid is wrapped in ErrInvalid: the token names a key we do not
// have even after a refresh.
var errUnknownKid = errors.New("unknown kid")

// key returns the key named kid.
func (k *keySet) key(ctx context.Context, kid string) (publicKey, error) {
	s := k.snap.Load()
	if s == nil || k.now().After(s.freshTill.Add(k.cfg.MaxStale)) {
		// No keys yet, or the background refresh has failed for longer
		// than allowed: try now (at most once per interval).
		if err := k.refresh(ctx); err != nil {
			return publicKey{}, fmt.Errorf("%w: %s: %v", ErrKeysUnavailable, k.name, err)
		}
		s = k.snap.Load()
	}
	if pk, ok := s.keys[kid]; ok {
		return pk, nil
	}
	// An unknown kid may be a rotation we have not seen yet, or noise; a
	// refresh happens at most once per MinRefreshInterval either way.
	_ = k.refresh(ctx)
	if pk, ok := k.snap.Load().keys[kid]; ok {
		return pk, nil
	}
	return publicKey{}, fmt.Errorf("%w: %w %q", ErrInvalid, errUnknownKid, truncate(kid))
}

// refresh fetches the keys, unless an attempt was made less than
// MinRefreshInterval ago: then it returns that attempt's result. Concurrent
// callers share one fetch.
func (k *keySet) refresh(ctx context.Context) error {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	now := k.now()
	if last := k.lastAttempt.Load(); last != 0 && now.Sub(time.Unix(0, last)) < k.cfg.MinRefreshInterval {
		if r := k.last.Load(); r != nil {
			return r.err
		}
		return nil
	}
	k.lastAttempt.Store(now.UnixNano())
	err := k.fetch(ctx)
	k.last.Store(&fetchResult{at: now, err: err})
	if err != nil {
		if k.m != nil {
			k.m.failed.Inc()
		}
		k.log.Warn("key fetch failed", zap.Error(err))
		return err
	}
	if k.m != nil {
		k.m.ok.Inc()
	}
	return nil
}

func (k *keySet) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.cfg.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	keys, err := parseKeys(body)
	if err != nil {
		return err
	}
	now := k.now()
	maxAge := cacheMaxAge(resp.Header.Get("Cache-Control"), k.cfg.DefaultMaxAge)
	k.snap.Store(&keySnapshot{keys: keys, fetchedAt: now, freshTill: now.Add(maxAge)})
	k.log.Info("keys fetched", zap.Int("keys", len(keys)), zap.Duration("max_age", maxAge))
	return nil
}

// maxDeltaSeconds is what RFC 9111 §1.2.2 says a larger delta-seconds
// counts as. It also keeps max-age from overflowing a time.Duration.
const maxDeltaSeconds = 1 << 31

// cacheMaxAge reads max-age from a Cache-Control header.
func cacheMaxAge(cc string, def time.Duration) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(d), "=")
		if ok && strings.EqualFold(name, "max-age") {
			n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
			if errors.Is(err, strconv.ErrRange) && n > 0 {
				n, err = maxDeltaSeconds, nil
			}
			if err == nil && n >= 0 {
				return time.Duration(min(n, maxDeltaSeconds)) * time.Second
			}
		}
	}
	return def
}

// parseKeys reads a JWKS or Google's x509 map (kid → PEM).
func parseKeys(body []byte) (map[string]publicKey, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, fmt.Errorf("key document is not a JSON object")
	}
	out := map[string]publicKey{}
	if raw, ok := probe["keys"]; ok {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil {
			return nil, fmt.Errorf("bad JWKS: %w", err)
		}
		_ = raw
		for _, jwk := range set.Keys {
			if jwk.KeyID == "" || (jwk.Use != "" && jwk.Use != "sig") || !jwk.IsPublic() {
				continue
			}
			out[jwk.KeyID] = publicKey{key: prepareKey(jwk.Key), alg: jwk.Algorithm}
		}
	} else {
		for kid, raw := range probe {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("key %q is not a PEM string", truncate(kid))
			}
			pk, err := parsePEMKey([]byte(s))
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", truncate(kid), err)
			}
			out[kid] = publicKey{key: prepareKey(pk)}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("key document holds no usable keys")
	}
	return out, nil
}

// parsePEMKey reads one PEM certificate or public key.
func parsePEMKey(b []byte) (any, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var pub any
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		pub = cert.PublicKey
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		pub = k
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		pub = k
	default:
		return nil, fmt.Errorf("PEM block %q is not a certificate or public key", block.Type)
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", pub)
}

// run refreshes the keys in the background as their max-age runs out, and
// retries a failed fetch every MinRefreshInterval, until ctx is done. sleep
// waits for d or until ctx is done (it reports false then); tests pass one
// that advances a fake clock.
func (k *keySet) run(ctx context.Context, sleep func(context.Context, time.Duration) bool) {
	for ctx.Err() == nil {
		var wait time.Duration
		s, r := k.snap.Load(), k.last.Load()
		switch {
		case r == nil && s == nil:
			wait = 0 // never tried
		case r != nil && r.err != nil:
			wait = k.cfg.MinRefreshInterval
		default:
			wait = max(s.freshTill.Sub(k.now()), k.cfg.MinRefreshInterval)
		}
		if wait > 0 && !sleep(ctx, wait) {
			return
		}
		_ = k.refresh(ctx)
	}
}

// check reports the key set's health: an error when there are no usable
// keys, or a stale (but still used) set.
//
// Keys past their max-age are degraded only when the refresh that came
// due then was tried and failed. Keys merely waiting for their refresh
// are not: with a max-age shorter than MinRefreshInterval they spend most
// of every interval past it, although every fetch succeeds.
func (k *keySet) check() error {
	s, r := k.snap.Load(), k.last.Load()
	if s == nil {
		if r != nil && r.err != nil {
			return fmt.Errorf("%s: no keys: %v", k.name, r.err)
		}
		return fmt.Errorf("%s: keys not fetched yet", k.name)
	}
	now := k.now()
	switch {
	case now.After(s.freshTill.Add(k.cfg.MaxStale)):
		return fmt.Errorf("%s: keys expired past max_stale", k.name)
	case now.After(s.freshTill) && r != nil && r.err != nil && !r.at.Before(s.freshTill):
		return fmt.Errorf("%w: %s: serving keys fetched %s ago, past their max-age: refresh: %v",
			errDegraded, k.name, now.Sub(s.fetchedAt).Round(time.Second), r.err)
	}
	return nil
}

// errDegraded marks a check failure that does not stop verification.
var errDegraded = errors.New("degraded")

// age is the age of the keys in use, for the gauge.
func (k *keySet) age() float64 {
	s := k.snap.Load()
	if s == nil {
		return 0
	}
	return k.now().Sub(s.fetchedAt).Seconds()
}

package cache

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/internal/secret"
)

// Defaults (see DefaultConfig), and bounds that catch unit mistakes.
const (
	defaultLocalMaxBytes     = 64 << 20
	defaultLoadTimeout       = 10 * time.Second
	defaultKeyPrefix         = "authgate:"
	defaultDialTimeout       = time.Second
	defaultReadTimeout       = 500 * time.Millisecond
	defaultWriteTimeout      = 500 * time.Millisecond
	defaultFailureBackoff    = time.Second
	defaultFailureBackoffMax = 30 * time.Second

	maxLoadTimeout    = 5 * time.Minute
	maxRedisTimeout   = time.Minute
	maxRedisPoolSize  = 10_000
	maxFailureBackoff = 10 * time.Minute
)

// Config configures every cache built with New. One Config (the yaml key
// "cache") is shared by all caches of the process; each cache is told apart
// by its name.
type Config struct {
	// LocalMaxBytes bounds the in-process tiers of all caches together, in
	// bytes of heap: one budget that verified tokens, user rows and
	// Firebase user records share (see Local), estimated per entry. When
	// it is reached, the least used entries of any cache are evicted
	// (counted in cache_evictions_total). Default 64 MiB; 0 means no
	// in-process tier (every lookup goes to Redis, or to the loader without
	// Redis); otherwise 1 MiB to 1 TiB. It replaced local_entries, a count
	// per cache, which bounded memory only as far as entries' sizes were
	// known.
	LocalMaxBytes int64 `yaml:"local_max_bytes"`
	// LocalMaxTTL caps how long an entry may live in the in-process tier,
	// whatever TTL it was stored with. An invalidation on one replica is
	// published to the others (see Redis.Run), which drop their copies at
	// once; a replica that misses it (no subscription at the moment) keeps
	// serving its copy until it expires, so this bounds how stale it can
	// be. Zero means no cap: an in-process entry lives as long as it does in
	// Redis.
	LocalMaxTTL time.Duration `yaml:"local_max_ttl"`
	// LoadTimeout bounds one load on a miss: the Redis lookup, the loader and
	// the Redis write. The load is shared by every caller waiting for the
	// key, so it does not end when the caller that started it goes away.
	// Default 10s; must be positive.
	LoadTimeout time.Duration `yaml:"load_timeout"`
	// Redis is the shared tier. Without addrs the caches are in-process only.
	Redis RedisConfig `yaml:"redis"`
}

// DefaultConfig returns the cache defaults, without Redis. A value the
// operator writes over it is used as written.
func DefaultConfig() Config {
	return Config{
		LocalMaxBytes: defaultLocalMaxBytes,
		LoadTimeout:   defaultLoadTimeout,
		Redis:         DefaultRedisConfig(),
	}
}

// Validate reports every problem with the configuration, each prefixed with
// its key.
func (c Config) Validate() error {
	var errs []error
	if c.LocalMaxBytes != 0 && (c.LocalMaxBytes < minLocalMaxBytes || c.LocalMaxBytes > maxLocalMaxBytes) {
		errs = append(errs, fmt.Errorf("local_max_bytes: %d is outside %d..%d (1 MiB to 1 TiB; 0 = no in-process tier)", c.LocalMaxBytes, minLocalMaxBytes, maxLocalMaxBytes))
	}
	if c.LocalMaxTTL < 0 {
		errs = append(errs, errors.New("local_max_ttl: must not be negative"))
	}
	if c.LoadTimeout <= 0 || c.LoadTimeout > maxLoadTimeout {
		errs = append(errs, fmt.Errorf("load_timeout: %s is outside 1ns..%s", c.LoadTimeout, maxLoadTimeout))
	}
	if err := c.Redis.Validate(); err != nil {
		errs = append(errs, configerr.Prefix("redis.", err))
	}
	return errors.Join(errs...)
}

// RedisConfig configures the connection to Redis, the tier shared by all
// replicas. Which client is built follows go-redis: master_name set means
// Sentinel, more than one address (or cluster) means Cluster, otherwise a
// single node.
type RedisConfig struct {
	// Addrs are host:port pairs: the node, the Sentinels (with MasterName)
	// or the Cluster seed nodes. Empty means no Redis at all.
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master name; set it to use Sentinel.
	MasterName string `yaml:"master_name"`
	// Cluster forces Cluster mode with a single address, as with a managed
	// service's configuration endpoint.
	Cluster bool `yaml:"cluster"`
	// DB is the logical database; it must be 0 with Cluster. The original
	// service used DB 1.
	DB int `yaml:"db"`
	// Username is the ACL user; empty means the default user.
	Username string `yaml:"username"`
	// Password authenticates Username. Prefer PasswordFile over writing the
	// password into the config file.
	Password secret.Secret `yaml:"password"`
	// PasswordFile is a file holding the password (a trailing newline is
	// ignored), such as a mounted Kubernetes Secret.
	PasswordFile string `yaml:"password_file"`
	// KeyPrefix is put in front of every key, followed by the cache's name
	// and a colon: "authgate:tokens:<key>". Default "authgate:"; the
	// original service used "atma:auth-v2:".
	KeyPrefix string `yaml:"key_prefix"`
	// DialTimeout bounds opening a connection. Default 1s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// ReadTimeout bounds one lookup, write or invalidation, from sending
	// the command to the last reply, retries included. Default 500ms: a
	// slow Redis is treated as a failing one, since the loader is the
	// fallback.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds sending a command. Default 500ms.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// PoolSize is the number of connections per node. Zero means the
	// go-redis default, 10 per GOMAXPROCS.
	PoolSize int `yaml:"pool_size"`
	// TLS turns on TLS (1.2 or later) with the system roots, verifying the
	// server name of each address.
	TLS bool `yaml:"tls"`
	// FailureBackoff is how long Redis is skipped after a failed command;
	// each further failure doubles it up to FailureBackoffMax, and a success
	// resets it. Lookups go straight to the loader meanwhile, so a dead
	// Redis does not add its timeout to every request. Default 1s.
	FailureBackoff time.Duration `yaml:"failure_backoff"`
	// FailureBackoffMax caps FailureBackoff. Default 30s.
	FailureBackoffMax time.Duration `yaml:"failure_backoff_max"`
}

// enabled reports whether a Redis tier is configured.
func (c RedisConfig) enabled() bool { return len(c.Addrs) > 0 }

// cluster reports whether go-redis will build a Cluster client.
func (c RedisConfig) cluster() bool {
	return c.MasterName == "" && (len(c.Addrs) > 1 || c.Cluster)
}

// DefaultRedisConfig returns the Redis defaults, without addresses (no
// Redis).
func DefaultRedisConfig() RedisConfig {
	return RedisConfig{
		KeyPrefix:         defaultKeyPrefix,
		DialTimeout:       defaultDialTimeout,
		ReadTimeout:       defaultReadTimeout,
		WriteTimeout:      defaultWriteTimeout,
		FailureBackoff:    defaultFailureBackoff,
		FailureBackoffMax: defaultFailureBackoffMax,
	}
}

// Validate reports every problem with the configuration, each prefixed with
// its key. A configuration without addrs is valid only if nothing else that
// needs Redis is set.
func (c RedisConfig) Validate() error {
	var errs []error
	if !c.enabled() {
		if c.MasterName != "" || c.Cluster {
			errs = append(errs, errors.New("addrs: required with master_name or cluster"))
		}
		return errors.Join(errs...)
	}
	for i, a := range c.Addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			errs = append(errs, fmt.Errorf("addrs[%d]: %q is not host:port", i, a))
		}
	}
	if c.MasterName != "" && c.Cluster {
		errs = append(errs, errors.New("cluster: cannot be combined with master_name"))
	}
	if c.DB < 0 {
		errs = append(errs, errors.New("db: must not be negative"))
	} else if c.DB != 0 && c.cluster() {
		errs = append(errs, errors.New("db: must be 0 with Redis Cluster (more than one address, or cluster, without master_name)"))
	}
	if _, err := c.password(); err != nil {
		errs = append(errs, err)
	}
	if strings.ContainsAny(c.KeyPrefix, " \t\r\n") {
		errs = append(errs, errors.New("key_prefix: must not contain whitespace"))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"dial_timeout", c.DialTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}} {
		if d.v <= 0 || d.v > maxRedisTimeout {
			errs = append(errs, fmt.Errorf("%s: %s is outside 1ns..%s", d.key, d.v, maxRedisTimeout))
		}
	}
	if c.PoolSize < 0 || c.PoolSize > maxRedisPoolSize {
		errs = append(errs, fmt.Errorf("pool_size: %d is outside 0..%d (0 = go-redis's default, 10 per CPU)", c.PoolSize, maxRedisPoolSize))
	}
	if c.FailureBackoff < 0 || c.FailureBackoff > maxFailureBackoff {
		errs = append(errs, fmt.Errorf("failure_backoff: %s is outside 0..%s (0 = no back-off)", c.FailureBackoff, maxFailureBackoff))
	}
	if c.FailureBackoffMax < 0 || c.FailureBackoffMax > maxFailureBackoff {
		errs = append(errs, fmt.Errorf("failure_backoff_max: %s is outside 0..%s", c.FailureBackoffMax, maxFailureBackoff))
	} else if c.FailureBackoffMax < c.FailureBackoff {
		errs = append(errs, errors.New("failure_backoff_max: must not be less than failure_backoff"))
	}
	return errors.Join(errs...)
}

// password returns Password, or the content of PasswordFile.
func (c RedisConfig) password() (string, error) {
	s, err := secret.Pick("password", c.Password, "password_file", c.PasswordFile)
	return s.Value(), err
}

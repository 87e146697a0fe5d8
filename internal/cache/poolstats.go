package cache

import (
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector returns a Prometheus collector of the Redis connection
// pool: connections total and idle, the hits, misses and timeouts of
// taking a connection from it, and the caches' round trips. Register it once; a nil *Redis collects
// nothing.
func (r *Redis) PoolCollector() prometheus.Collector { return poolCollector{r} }

var (
	redisConnsDesc    = prometheus.NewDesc("redis_pool_connections", "Redis connections open in the pool.", nil, nil)
	redisIdleDesc     = prometheus.NewDesc("redis_pool_idle_connections", "Redis connections idle in the pool.", nil, nil)
	redisHitsDesc     = prometheus.NewDesc("redis_pool_hits_total", "Times a free connection was found in the pool.", nil, nil)
	redisMissesDesc   = prometheus.NewDesc("redis_pool_misses_total", "Times no free connection was found and one was opened or waited for.", nil, nil)
	redisTimeoutsDesc = prometheus.NewDesc("redis_pool_timeouts_total", "Times waiting for a pooled connection timed out.", nil, nil)
	redisTripsDesc    = prometheus.NewDesc("redis_round_trips_total", "Round trips to Redis for cache lookups, writes and invalidations; a pipeline is one.", nil, nil)
)

type poolCollector struct{ r *Redis }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{redisConnsDesc, redisIdleDesc, redisHitsDesc, redisMissesDesc, redisTimeoutsDesc, redisTripsDesc} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	if c.r == nil {
		return
	}
	s := c.r.client.PoolStats()
	ch <- prometheus.MustNewConstMetric(redisConnsDesc, prometheus.GaugeValue, float64(s.TotalConns))
	ch <- prometheus.MustNewConstMetric(redisIdleDesc, prometheus.GaugeValue, float64(s.IdleConns))
	ch <- prometheus.MustNewConstMetric(redisHitsDesc, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(redisMissesDesc, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(redisTimeoutsDesc, prometheus.CounterValue, float64(s.Timeouts))
	ch <- prometheus.MustNewConstMetric(redisTripsDesc, prometheus.CounterValue, float64(c.r.trips.Load()))
}

package federation

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics registers the Store's metrics with reg, if any.
func registerMetrics(reg prometheus.Registerer, s *Store) error {
	if reg == nil {
		return nil
	}
	if err := reg.Register(newPoolCollector(s.pool)); err != nil {
		return fmt.Errorf("register federation metrics: %w", err)
	}
	return nil
}

// poolCollector reports the pool's statistics when scraped.
type poolCollector struct {
	pool                                     *pgxpool.Pool
	acquired, idle, total, max               *prometheus.Desc
	acquires, emptyAcquires, canceledAcquire *prometheus.Desc
}

func newPoolCollector(pool *pgxpool.Pool) *poolCollector {
	return &poolCollector{
		pool:     pool,
		acquired: prometheus.NewDesc("db_pool_acquired_connections", "PostgreSQL connections in use.", nil, nil),
		idle:     prometheus.NewDesc("db_pool_idle_connections", "PostgreSQL connections idle in the pool.", nil, nil),
		total:    prometheus.NewDesc("db_pool_connections", "PostgreSQL connections open, in use, idle or being opened.", nil, nil),
		max:      prometheus.NewDesc("db_pool_max_connections", "The pool's bound (max_conns).", nil, nil),
		acquires: prometheus.NewDesc("db_pool_acquires_total", "Connections acquired from the pool.", nil, nil),
		emptyAcquires: prometheus.NewDesc("db_pool_empty_acquires_total",
			"Acquires that found no idle connection and waited for one to open or be released.", nil, nil),
		canceledAcquire: prometheus.NewDesc("db_pool_canceled_acquires_total",
			"Acquires that gave up (acquire timeout or request gone).", nil, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.acquires, c.emptyAcquires, c.canceledAcquire} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.acquired, prometheus.GaugeValue, float64(st.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(st.IdleConns()))
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(st.TotalConns()))
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(st.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.acquires, prometheus.CounterValue, float64(st.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.emptyAcquires, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.canceledAcquire, prometheus.CounterValue, float64(st.CanceledAcquireCount()))
}

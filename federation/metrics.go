package federation

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// result is an EnsureUser outcome, the label of user_upserts_total.
type result int

const (
	resultExisting    result = iota // the row was there (or another request created it)
	resultCreated                   // this request created the row
	resultLinked                    // this request linked an existing account
	resultLinkRefused               // the email's account was not linked: email not verified
	resultConflict                  // the email's account is linked to another uid
	resultDisabled                  // the row is disabled or soft-deleted
	resultDegraded                  // served from the token, PostgreSQL unreachable
	resultUnknown                   // a legacy token for a user without a row
	resultError                     // anything else, and PostgreSQL unreachable under deny
	numResults
)

var resultNames = [numResults]string{
	"existing", "created", "linked", "link_refused", "conflict", "disabled", "degraded", "unknown", "error",
}

// metrics are resolved to label values once, so that counting does not
// allocate.
type metrics struct {
	upserts         [numResults]prometheus.Counter
	lastLoginWrites prometheus.Counter
	skipped         prometheus.Counter
	pendingDropped  prometheus.Counter
	loginsDropped   prometheus.Counter
	workerRuns      [numRunResults]prometheus.Counter
	workerRows      [numRowResults]prometheus.Counter
}

func (m *metrics) upsert(r result) { m.upserts[r].Inc() }

func newMetrics(reg prometheus.Registerer, s *Store) (*metrics, error) {
	upserts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "user_upserts_total",
		Help: "EnsureUser calls by result: existing, created, linked, link_refused, conflict, disabled, degraded, unknown, error.",
	}, []string{"result"})
	m := &metrics{
		lastLoginWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "last_login_writes_total",
			Help: "Rows whose last_login was written by a batch flush.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "user_store_skipped_total",
			Help: "Requests that did not try PostgreSQL because it failed recently (circuit breaker open).",
		}),
		loginsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "last_login_dropped_total",
			Help: "last_login writes dropped because last_login_max were already waiting (PostgreSQL unreachable or slow).",
		}),
		pendingDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "users_pending_dropped_total",
			Help: "Identities served during an outage but not remembered for row creation, pending_max being reached.",
		}),
	}
	for r := range numResults {
		m.upserts[r] = upserts.WithLabelValues(resultNames[r])
	}
	workerRuns := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "federation_worker_runs_total",
		Help: "Rounds of the federation worker by result: ok, skipped (another replica holds the lock), error (PostgreSQL or Firebase unavailable).",
	}, []string{"result"})
	for r := range numRunResults {
		m.workerRuns[r] = workerRuns.WithLabelValues(runResultNames[r])
	}
	workerRows := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "federation_worker_rows_total",
		Help: "Failed federations retried by the worker, by result: linked, refreshed, disabled, failed (retried later), gave_up (max_attempts reached), skipped (changed meanwhile), error.",
	}, []string{"result"})
	for r := range numRowResults {
		m.workerRows[r] = workerRows.WithLabelValues(rowResultNames[r])
	}
	if reg == nil {
		return m, nil
	}
	if s.cfg.Worker.Enabled {
		for _, c := range []prometheus.Collector{workerRuns, workerRows} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register federation worker metrics: %w", err)
			}
		}
	}
	available := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "user_store_available",
		Help: "1 while PostgreSQL is used, 0 while the circuit breaker skips it after a failure.",
	}, func() float64 {
		if s.br.Open() {
			return 0
		}
		return 1
	})
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "users_pending",
		Help: "Identities served during an outage whose rows wait to be created.",
	}, func() float64 { return float64(s.wait.len()) })
	for _, c := range []prometheus.Collector{upserts, m.lastLoginWrites, m.loginsDropped, m.skipped, m.pendingDropped, available, pending, newPoolCollector(s.pool)} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register federation metrics: %w", err)
		}
	}
	return m, nil
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

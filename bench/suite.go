package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Requests of the suite. Forward-auth requests are what Traefik sends:
// the original method, host and URI in X-Forwarded-* and the client's
// bearer token. The floor gets the same bytes.
const (
	faHost  = "authgate.bench.test"
	appHost = "app.bench.test"
	appPath = "/api/orders?page=2"
	// redisTiny is local_max_ttl of the fa-redis instance: long enough for
	// the user row fetched along with a token to serve that request, far
	// shorter than the ~30 ms before the round-robin comes back to a token.
	redisTiny = 5 * time.Millisecond
)

func forwardAuthRequest(token string) []byte {
	return httpGet(nil, faHost, "/auth",
		"X-Forwarded-Method", "GET",
		"X-Forwarded-Proto", "https",
		"X-Forwarded-Host", appHost,
		"X-Forwarded-Uri", appPath,
		"X-Forwarded-For", "203.0.113.7",
		"Authorization", "Bearer "+token)
}

func proxyRequest(token string) []byte {
	return httpGet(nil, appHost, appPath, "Authorization", "Bearer "+token)
}

// fixed sends the same request every time.
func fixed(req []byte) requestFunc {
	return func(dst []byte, _ int64) []byte { return append(dst, req...) }
}

// redisUsers is the number of hot tokens (and users) of fa-redis and
// fa-usage.
const redisUsers = 256

// The bases of fa-assert and fa-usage: the same configuration with the
// feature off.
const (
	scFAAssertOff = "fa-assert-off"
	scFAUsageOff  = "fa-usage-off"
)

// usageFlush is usage.flush_interval in fa-usage.
const usageFlush = time.Second

// roundRobin sends the tokens of toks in turn, in forward-auth requests.
func roundRobin(toks []string) requestFunc {
	reqs := make([][]byte, len(toks))
	for i, t := range toks {
		reqs[i] = forwardAuthRequest(t)
	}
	return func(dst []byte, n int64) []byte { return append(dst, reqs[n%int64(len(reqs))]...) }
}

// eachToken sends the n-th token of toks in a forward-auth request.
func eachToken(toks []string) requestFunc {
	prefix, suffix, _ := strings.Cut(string(forwardAuthRequest("\x00")), "\x00")
	return func(dst []byte, n int64) []byte {
		dst = append(dst, prefix...)
		dst = append(dst, toks[n]...)
		return append(dst, suffix...)
	}
}

type suite struct {
	o       options
	log     io.Writer
	goTool  string
	modDir  string
	dir     string
	mach    machine
	started time.Time

	fx       *fixture
	sig      *signer
	ks       *keyServer
	migrated bool
	procs    []*proc
}

func newSuite(ctx context.Context, o options, log io.Writer) (*suite, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go tool is needed to build authgate: %w", err)
	}
	modDir, err := moduleRoot(goTool)
	if err != nil {
		return nil, err
	}
	if err := checkServices(ctx, o.databaseURL, o.redisAddr); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "authgate-bench-")
	if err != nil {
		return nil, err
	}
	return &suite{o: o, log: log, goTool: goTool, modDir: modDir, dir: dir, started: time.Now()}, nil
}

func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(s.log, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// close stops every process and removes what the suite created.
func (s *suite) close() error {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].stop()
	}
	var err error
	if s.migrated {
		err = s.fx.cleanup()
	}
	if s.ks != nil {
		s.ks.close()
	}
	if s.o.keep {
		s.logf("kept %s", s.dir)
	} else {
		_ = os.RemoveAll(s.dir)
	}
	return err
}

func (s *suite) startHelper(ctx context.Context, name string, args ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if s.o.profile != "" {
		args = append(args, "-pprof")
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	p, err := startProc(ctx, name, cmd, filepath.Join(s.dir, name+".log"), false)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	return p, nil
}

func (s *suite) startAuthgate(ctx context.Context, name string, c agConfig) (*proc, error) {
	p, err := s.fx.start(ctx, name, c)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	return p, nil
}

// target is a server under load and the requests it gets.
type target struct {
	name    string
	p       *proc
	authg   bool // authgate: scrape /metrics around the run
	request requestFunc
	limit   int64 // requests per run, 0 = by duration
	// next returns the request function for a run that starts at an
	// offset of a token set, when limit is set.
	next func() (requestFunc, requestFunc) // warm-up, measured
}

// pairSpec is one interleaved comparison: base and x run in turn in every
// round.
type pairSpec struct {
	scenario string
	base, x  *target
	// sig, if set, runs right after x in every round: the RS256 floor sent
	// the same kind of requests as x, to which x's cost is also compared.
	sig *target
}

func (s *suite) run(ctx context.Context) (*report, error) {
	o := s.o
	s.mach = describeMachine(s.goTool)
	s.mach.loadAvg[0] = loadAverage()
	rep := &report{o: o, mach: &s.mach, started: s.started}
	s.logf("load average %.2f; temporary directory %s", s.mach.loadAvg[0], s.dir)

	s.logf("building authgate")
	bin, err := buildAuthgate(ctx, s.goTool, s.modDir, s.dir)
	if err != nil {
		return nil, err
	}
	if s.sig, err = newSigner(); err != nil {
		return nil, err
	}
	if s.ks, err = startKeyServer(s.sig); err != nil {
		return nil, err
	}
	secret := filepath.Join(s.dir, "legacy-hs256")
	if err := os.WriteFile(secret, []byte(legacySecret+"\n"), 0o600); err != nil {
		return nil, err
	}
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	s.fx = &fixture{
		bin: bin, dir: s.dir, keysURL: s.ks.url, secretFile: secret,
		databaseURL: o.databaseURL, schema: "authgate_bench_" + nonce,
		redisAddr: o.redisAddr, redisPrefix: "authgate-bench-" + nonce + ":",
		logPipe: o.logSink == "pipe",
	}
	s.migrated = true // from here on, cleanup drops the schema
	s.logf("authgate migrate into schema %s", s.fx.schema)
	if err := s.fx.migrate(ctx); err != nil {
		return nil, err
	}

	pairs, err := s.setUp(ctx)
	if err != nil {
		return rep, err
	}
	for _, pr := range pairs {
		rep.pairs = append(rep.pairs, &pairResult{spec: pr})
	}
	for round := range o.rounds {
		for i, pr := range pairs {
			s.logf("round %d/%d: %s vs %s", round+1, o.rounds, pr.base.name, pr.x.name)
			b, err := s.measure(ctx, pr.base)
			if err != nil {
				return rep, err
			}
			x, err := s.measure(ctx, pr.x)
			if err != nil {
				return rep, err
			}
			stats := []runStat{b, x}
			if pr.sig != nil {
				sig, err := s.measure(ctx, pr.sig)
				if err != nil {
					return rep, err
				}
				stats = append(stats, sig)
			}
			rep.pairs[i].rounds = append(rep.pairs[i].rounds, stats)
		}
	}
	if o.profile != "" {
		if err := s.profileRuns(ctx, pairs); err != nil {
			return rep, err
		}
		rep.profileDir = o.profile
	}
	if o.allocs && o.has(scFAHit) {
		s.logf("handler benchmark: BenchmarkForwardAuth/cache=hit/accesslog=on")
		if rep.allocs, err = s.handlerAllocs(ctx); err != nil {
			return rep, err
		}
	}
	if o.has(scRSS) {
		if rep.rss, err = s.rssRun(ctx); err != nil {
			return rep, err
		}
	}
	if o.has(scStartup) {
		if rep.startup, err = s.startupRuns(ctx); err != nil {
			return rep, err
		}
	}
	s.mach.loadAvg[1] = loadAverage()
	rep.finished = time.Now()
	return rep, nil
}

// setUp starts the servers the chosen scenarios need, warms them, mints
// the token sets, and returns the pairs to interleave.
func (s *suite) setUp(ctx context.Context) ([]pairSpec, error) {
	o := s.o
	needFloor := o.has(scFAHit) || o.has(scFANoLog) || o.has(scFACold) || o.has(scFAColdR) || o.has(scFANew) || o.has(scFARedis)
	var floor, upstream, bare, rs256 *proc
	var err error
	if needFloor {
		if floor, err = s.startHelper(ctx, cmdFloor); err != nil {
			return nil, err
		}
	}
	if o.has(scFACold) {
		cert := filepath.Join(s.dir, "rs256-cert.pem")
		if err := os.WriteFile(cert, s.sig.cert, 0o644); err != nil {
			return nil, err
		}
		if rs256, err = s.startHelper(ctx, cmdRS256, "-cert", cert); err != nil {
			return nil, err
		}
	}
	if o.has(scProxy) {
		if upstream, err = s.startHelper(ctx, cmdUpstream); err != nil {
			return nil, err
		}
		if bare, err = s.startHelper(ctx, cmdRevProxy, "-upstream", "http://"+upstream.public); err != nil {
			return nil, err
		}
	}
	hot := func(uid string) (string, error) { return s.sig.firebase(uid, time.Minute) }
	var pairs []pairSpec
	floorTarget := func(tok string) *target {
		return &target{name: "floor", p: floor, request: fixed(forwardAuthRequest(tok))}
	}
	for _, sc := range o.scenarios {
		switch sc {
		case scFAHit, scFANoLog:
			p, err := s.startAuthgate(ctx, sc, agConfig{pprof: o.profile != "", noAccessLog: sc == scFANoLog})
			if err != nil {
				return nil, err
			}
			tok, err := hot("bench-" + sc)
			if err != nil {
				return nil, err
			}
			// The first request verifies the token and creates the user's
			// row; the rounds measure what follows.
			if err := s.warm(ctx, p, fixed(forwardAuthRequest(tok)), 1); err != nil {
				return nil, err
			}
			pairs = append(pairs, pairSpec{sc, floorTarget(tok), &target{name: sc, p: p, authg: true, request: fixed(forwardAuthRequest(tok))}, nil})
		case scFARedis:
			// The in-process tier keeps entries for a nanosecond, so every
			// request is a replica's first sight of the token and the user
			// row. redisUsers hot tokens of as many users, sent round-robin,
			// keep concurrent requests from sharing one Redis lookup (which
			// a single hot token would, and so hide the cost).
			p, err := s.startAuthgate(ctx, sc, agConfig{localMaxTTL: redisTiny, redis: true, pprof: o.profile != ""})
			if err != nil {
				return nil, err
			}
			toks, err := s.sig.mintFirebase(redisUsers, func(i int) (string, time.Duration) {
				return fmt.Sprintf("bench-redis-%d", i), time.Minute
			})
			if err != nil {
				return nil, err
			}
			req := roundRobin(toks)
			if err := s.warm(ctx, p, req, redisUsers); err != nil {
				return nil, err
			}
			pairs = append(pairs, pairSpec{sc, floorTarget(toks[0]), &target{name: sc, p: p, authg: true, request: req}, nil})
		case scFACold, scFAColdR, scFANew:
			p, err := s.startAuthgate(ctx, sc, agConfig{pprof: o.profile != "", redis: sc == scFAColdR})
			if err != nil {
				return nil, err
			}
			var sigProc *proc
			if sc == scFACold {
				sigProc = rs256
			}
			x, sig, err := s.tokenTarget(ctx, sc, p, sigProc)
			if err != nil {
				return nil, err
			}
			tok, err := hot("bench-floor")
			if err != nil {
				return nil, err
			}
			pairs = append(pairs, pairSpec{sc, floorTarget(tok), x, sig})
		case scFAAssert:
			// fa-hit's configuration and token, with and without the
			// assertion: the ratio is what signing (once per user and
			// audience for three quarters of its lifetime) and the extra
			// header cost on the hot path.
			key := filepath.Join(s.dir, "assertion.pem")
			if err := writeAssertionKey(key); err != nil {
				return nil, err
			}
			off, err := s.startAuthgate(ctx, scFAAssertOff, agConfig{pprof: o.profile != ""})
			if err != nil {
				return nil, err
			}
			on, err := s.startAuthgate(ctx, sc, agConfig{pprof: o.profile != "", assertionKey: key})
			if err != nil {
				return nil, err
			}
			tok, err := hot("bench-" + sc)
			if err != nil {
				return nil, err
			}
			req := fixed(forwardAuthRequest(tok))
			for _, p := range []*proc{off, on} {
				if err := s.warm(ctx, p, req, 1); err != nil {
					return nil, err
				}
			}
			if err := checkAssertion(ctx, on, tok); err != nil {
				return nil, err
			}
			pairs = append(pairs, pairSpec{sc,
				&target{name: scFAAssertOff, p: off, authg: true, request: req},
				&target{name: sc, p: on, authg: true, request: req}, nil})
		case scFAUsage:
			// The usage telemetry on against off, with Redis as the shared
			// tier its batches go to. redisUsers hot tokens of as many
			// users, so that a flush carries that many distinct users;
			// flushed every second, ten times the default rate, so that
			// every run has flushes in it.
			toks, err := s.sig.mintFirebase(redisUsers, func(i int) (string, time.Duration) {
				return fmt.Sprintf("bench-usage-%d", i), time.Minute
			})
			if err != nil {
				return nil, err
			}
			off, err := s.startAuthgate(ctx, scFAUsageOff, agConfig{redis: true, usageOff: true, pprof: o.profile != ""})
			if err != nil {
				return nil, err
			}
			on, err := s.startAuthgate(ctx, sc, agConfig{redis: true, usageFlush: usageFlush, pprof: o.profile != ""})
			if err != nil {
				return nil, err
			}
			req := roundRobin(toks)
			for _, p := range []*proc{off, on} {
				if err := s.warm(ctx, p, req, redisUsers); err != nil {
					return nil, err
				}
			}
			pairs = append(pairs, pairSpec{sc,
				&target{name: scFAUsageOff, p: off, authg: true, request: req},
				&target{name: sc, p: on, authg: true, request: req}, nil})
		case scProxy:
			p, err := s.startAuthgate(ctx, sc, agConfig{upstream: "http://" + upstream.public, pprof: o.profile != ""})
			if err != nil {
				return nil, err
			}
			tok, err := hot("bench-proxy")
			if err != nil {
				return nil, err
			}
			req := fixed(proxyRequest(tok))
			if err := s.warm(ctx, p, req, 1); err != nil {
				return nil, err
			}
			pairs = append(pairs, pairSpec{sc,
				&target{name: "revproxy", p: bare, request: req},
				&target{name: sc, p: p, authg: true, request: req}, nil})
		}
	}
	return pairs, nil
}

// tokenTarget mints the token sets of fa-cold (new tokens of cold-users
// known users, whose rows are created first) or fa-new (a new user per
// token): one set per round, plus one for a profile run, each with a tenth
// more for the warm-up. With sigProc (the RS256 floor) it also returns a
// target that sends sigProc the same sets in the same order.
func (s *suite) tokenTarget(ctx context.Context, sc string, p, sigProc *proc) (x, sig *target, err error) {
	o := s.o
	runs := o.rounds
	if o.profile != "" {
		runs++
	}
	warmN := max(o.coldTokens/10, 1)
	per := o.coldTokens + warmN
	total := runs * per
	var spec tokenSpec
	if sc == scFACold || sc == scFAColdR {
		users := o.coldUsers
		spec = func(i int) (string, time.Duration) {
			// Token i of user i%users is issued i/users seconds earlier
			// than the one before it: every token differs.
			return fmt.Sprintf("bench-%s-%d", sc, i%users), time.Minute + time.Duration(i/users)*time.Second
		}
		// The users' rows exist before the rounds: a token each, sent
		// once.
		rows, err := s.sig.mintFirebase(users, func(i int) (string, time.Duration) {
			return fmt.Sprintf("bench-%s-%d", sc, i), 30 * time.Second
		})
		if err != nil {
			return nil, nil, err
		}
		if err := s.warm(ctx, p, eachToken(rows), int64(users)); err != nil {
			return nil, nil, err
		}
	} else {
		spec = func(i int) (string, time.Duration) { return fmt.Sprintf("bench-new-%d", i), time.Minute }
	}
	t0 := time.Now()
	toks, err := s.sig.mintFirebase(total, spec)
	if err != nil {
		return nil, nil, err
	}
	s.logf("%s: minted %d RS256 tokens in %s", sc, total, time.Since(t0).Round(time.Millisecond))
	sets := func() func() (requestFunc, requestFunc) {
		run := 0
		return func() (requestFunc, requestFunc) {
			set := toks[run*per : (run+1)*per]
			run++
			return eachToken(set[:warmN]), eachToken(set[warmN:])
		}
	}
	x = &target{name: sc, p: p, authg: true, limit: int64(o.coldTokens), next: sets()}
	if sigProc != nil {
		sig = &target{name: cmdRS256, p: sigProc, limit: int64(o.coldTokens), next: sets()}
	}
	return x, sig, nil
}

// warm sends n requests (over one connection per 8) and fails unless all
// are answered 200.
func (s *suite) warm(ctx context.Context, p *proc, req requestFunc, n int64) error {
	lr := runLoad(ctx, loadSpec{addr: p.public, conns: int(min(max(n/8, 1), int64(s.o.conns))), duration: time.Minute, limit: n, request: req, wantStatus: http.StatusOK})
	if lr.errors > 0 {
		return fmt.Errorf("%s: warm-up: %d errors, first: %v\n%s", p.name, lr.errors, lr.firstErr, p.tail())
	}
	return nil
}

// runStat is one measured run.
type runStat struct {
	requests  int64
	elapsed   time.Duration
	rps       float64
	p50, p99  time.Duration
	cpu       time.Duration
	cpuPerReq time.Duration
	peakRSS   int64
	hwmReset  bool
	// perReq holds authgate's counters per request over the run.
	perReq map[string]float64
}

// measure warms t up, then runs the measured load and reads the server's
// CPU time and peak RSS around it.
func (s *suite) measure(ctx context.Context, t *target) (runStat, error) {
	o := s.o
	warmReq, req := t.request, t.request
	dur, limit := o.duration, t.limit
	if t.next != nil {
		warmReq, req = t.next()
		dur = 10 * time.Minute // the token count ends the run
	}
	if err := t.p.alive(); err != nil {
		return runStat{}, err
	}
	switch {
	case t.next != nil:
		if err := s.warm(ctx, t.p, warmReq, int64(max(o.coldTokens/10, 1))); err != nil {
			return runStat{}, err
		}
	case o.warmup > 0:
		lr := runLoad(ctx, loadSpec{addr: t.p.public, conns: o.conns, duration: o.warmup, request: warmReq, rate: o.rate, wantStatus: http.StatusOK})
		if lr.errors > 0 {
			return runStat{}, fmt.Errorf("%s: warm-up: %d errors, first: %v\n%s", t.name, lr.errors, lr.firstErr, t.p.tail())
		}
	}
	var before metrics
	var err error
	if t.authg {
		if before, err = scrape(ctx, t.p.admin); err != nil {
			return runStat{}, err
		}
	}
	pid := t.p.pid()
	reset := resetPeakRSS(pid)
	cpu0, err := cpuTime(pid)
	if err != nil {
		return runStat{}, err
	}
	lr := runLoad(ctx, loadSpec{addr: t.p.public, conns: o.conns, duration: dur, limit: limit, request: req, rate: o.rate, wantStatus: http.StatusOK})
	cpu1, err := cpuTime(pid)
	if err != nil {
		return runStat{}, err
	}
	hwm, _, err := memStatus(pid)
	if err != nil {
		return runStat{}, err
	}
	if err := ctx.Err(); err != nil {
		return runStat{}, err
	}
	if lr.errors > 0 {
		return runStat{}, fmt.Errorf("%s: %d errors in %d requests, first: %v\n%s", t.name, lr.errors, lr.requests+lr.errors, lr.firstErr, t.p.tail())
	}
	if lr.requests == 0 {
		return runStat{}, fmt.Errorf("%s: no request answered", t.name)
	}
	st := runStat{
		requests: lr.requests, elapsed: lr.elapsed, rps: lr.rps(),
		p50: lr.percentile(50), p99: lr.percentile(99),
		cpu: cpu1 - cpu0, cpuPerReq: (cpu1 - cpu0) / time.Duration(lr.requests),
		peakRSS: hwm, hwmReset: reset,
	}
	if t.authg {
		after, err := scrape(ctx, t.p.admin)
		if err != nil {
			return runStat{}, err
		}
		st.perReq = perRequest(before, after, lr.requests)
	}
	return st, nil
}

// Counters read from authgate's /metrics around each run.
const (
	ctrVerify      = "verifications"
	ctrTokensLocal = "token cache: in-process hits"
	ctrTokensRedis = "token cache: Redis lookups"
	ctrTokensHit   = "token cache: Redis hits"
	ctrUsersLocal  = "user cache: in-process hits"
	ctrUsersRedis  = "user cache: Redis lookups"
	ctrUsersHit    = "user cache: Redis hits"
	ctrDB          = "PostgreSQL acquires"
	ctrCreated     = "users created"
	ctrTrips       = "Redis round trips"
)

var counterOrder = []string{ctrVerify, ctrTokensLocal, ctrTokensRedis, ctrTokensHit, ctrUsersLocal, ctrUsersRedis, ctrUsersHit, ctrTrips, ctrDB, ctrCreated}

func perRequest(before, after metrics, n int64) map[string]float64 {
	const cr = "authgate_cache_requests_total"
	get := func(m metrics) map[string]float64 {
		return map[string]float64{
			ctrVerify:      m.sum("authgate_verify_total"),
			ctrTokensLocal: m.sum(cr, "cache", "tokens", "tier", "local", "result", "hit"),
			ctrTokensRedis: m.sum(cr, "cache", "tokens", "tier", "redis"),
			ctrTokensHit:   m.sum(cr, "cache", "tokens", "tier", "redis", "result", "hit"),
			ctrUsersLocal:  m.sum(cr, "cache", "users", "tier", "local", "result", "hit"),
			ctrUsersRedis:  m.sum(cr, "cache", "users", "tier", "redis"),
			ctrUsersHit:    m.sum(cr, "cache", "users", "tier", "redis", "result", "hit"),
			ctrDB:          m.sum("authgate_db_pool_acquires_total"),
			ctrCreated:     m.sum("authgate_user_upserts_total", "result", "created"),
			ctrTrips:       m.sum("authgate_redis_round_trips_total"),
		}
	}
	b, a := get(before), get(after)
	out := make(map[string]float64, len(a))
	for k := range a {
		out[k] = (a[k] - b[k]) / float64(n)
	}
	return out
}

// profileRuns captures, for each authgate scenario, a CPU profile over
// one extra run and the allocations made during it.
func (s *suite) profileRuns(ctx context.Context, pairs []pairSpec) error {
	// The floor and the bare reverse proxy are profiled once each too,
	// to compare with.
	if err := os.MkdirAll(s.o.profile, 0o755); err != nil {
		return err
	}
	secs := max(int(s.o.duration.Round(time.Second)/time.Second), 1)
	client := &http.Client{Timeout: time.Duration(secs)*time.Second + 30*time.Second}
	var targets []*target
	for _, pr := range pairs {
		targets = append(targets, pr.x)
		if pr.sig != nil && pr.sig.p.admin != "" {
			targets = append(targets, pr.sig)
		}
		if pr.base.p.admin != "" && !slices.ContainsFunc(targets, func(t *target) bool { return t.name == pr.base.name }) {
			targets = append(targets, pr.base)
		}
	}
	for _, t := range targets {
		s.logf("profile: %s (%ds)", t.name, secs)
		base := "http://" + t.p.admin + "/debug/pprof/"
		allocsBefore, err := getURL(ctx, client, base+"allocs")
		if err != nil {
			return fmt.Errorf("profile %s: %w (pprof is on only with -profile)", t.name, err)
		}
		type result struct {
			b   []byte
			err error
		}
		cpuc := make(chan result, 1)
		go func() {
			b, err := getURL(ctx, client, base+"profile?seconds="+strconv.Itoa(secs))
			cpuc <- result{b, err}
		}()
		pt := *t
		if pt.next == nil {
			pt.limit = 0
		}
		saved := s.o
		s.o.duration = time.Duration(secs) * time.Second
		_, err = s.measure(ctx, &pt)
		s.o = saved
		cpu := <-cpuc
		if err != nil {
			return err
		}
		if cpu.err != nil {
			return fmt.Errorf("profile %s: %w", t.name, cpu.err)
		}
		allocsAfter, err := getURL(ctx, client, base+"allocs")
		if err != nil {
			return err
		}
		files := map[string][]byte{
			t.name + ".cpu.pprof":           cpu.b,
			t.name + ".allocs-before.pprof": allocsBefore,
			t.name + ".allocs-after.pprof":  allocsAfter,
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(s.o.profile, name), b, 0o644); err != nil {
				return err
			}
		}
		// Readable summaries next to the profiles.
		dir := s.o.profile
		tops := []struct {
			file string
			args []string
		}{
			{t.name + ".cpu.txt", []string{"-top", "-nodecount=35", filepath.Join(dir, t.name+".cpu.pprof")}},
			{t.name + ".cpu-cum.txt", []string{"-top", "-cum", "-nodecount=35", filepath.Join(dir, t.name+".cpu.pprof")}},
			{t.name + ".allocs.txt", []string{"-top", "-nodecount=35", "-sample_index=alloc_objects",
				"-base", filepath.Join(dir, t.name+".allocs-before.pprof"), filepath.Join(dir, t.name+".allocs-after.pprof")}},
		}
		for _, tp := range tops {
			out, err := exec.CommandContext(ctx, s.goTool, append([]string{"tool", "pprof"}, tp.args...)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("go tool pprof %s: %w\n%s", tp.file, err, out)
			}
			if err := os.WriteFile(filepath.Join(dir, tp.file), out, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

var allocsRE = regexp.MustCompile(`\s(\d+) allocs/op`)

// handlerAllocs runs the handler benchmark of the allocation target and
// returns its allocs/op.
func (s *suite) handlerAllocs(ctx context.Context) (int, error) {
	cmd := exec.CommandContext(ctx, s.goTool, "test", "-run", "^$", "-bench", "^BenchmarkForwardAuth$/^cache=hit/accesslog=on$",
		"-benchmem", "-benchtime", "20000x", "./proxy")
	cmd.Dir = s.modDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("handler benchmark: %w\n%s", err, out)
	}
	m := allocsRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("handler benchmark: no allocs/op in\n%s", out)
	}
	return strconv.Atoi(string(m[1]))
}

// rssResult is the memory of an authgate that holds many cached tokens.
type rssResult struct {
	tokens        int
	startRSS      int64
	peakRSS, rss  int64
	fileRSS       int64
	verifications float64
	elapsed       time.Duration
	// cacheBytes is authgate's estimate of its in-process entries
	// (cache_local_bytes), evictions what cache.local_max_bytes evicted.
	cacheBytes, evictions float64
	// memLimit is the Go runtime's soft memory limit in effect
	// (go_gc_gomemlimit_bytes), heapAlloc the heap in use after the fill
	// (go_memstats_heap_alloc_bytes).
	memLimit, heapAlloc float64
	// fillCPU is CPU per request while the tokens were new; hitCPU over a
	// second pass that sends the first hitRequests of them again, of
	// which hits were answered from the in-process tier.
	fillCPU, hitCPU   time.Duration
	hitRequests, hits int64
}

// rssRun starts a fresh authgate and sends it rss-tokens distinct legacy
// (HS256) tokens, one per user, each once: afterwards both the token cache
// and the user cache hold that many entries. HS256 because minting 100 000
// RS256 tokens would take minutes; a cached entry is the same size either
// way.
func (s *suite) rssRun(ctx context.Context) (rssResult, error) {
	n := s.o.rssTokens
	s.logf("rss: %d users and tokens", n)
	ids, err := s.fx.insertUsers(ctx, n)
	if err != nil {
		return rssResult{}, err
	}
	toks := make([]string, n)
	for i, id := range ids {
		toks[i] = s.sig.legacy(id)
	}
	p, err := s.startAuthgate(ctx, scRSS, agConfig{pprof: s.o.profile != ""})
	if err != nil {
		return rssResult{}, err
	}
	defer p.stop()
	_, startRSS, err := memStatus(p.pid())
	if err != nil {
		return rssResult{}, err
	}
	before, err := scrape(ctx, p.admin)
	if err != nil {
		return rssResult{}, err
	}
	cpu0, err := cpuTime(p.pid())
	if err != nil {
		return rssResult{}, err
	}
	lr := runLoad(ctx, loadSpec{addr: p.public, conns: s.o.conns, duration: 30 * time.Minute, limit: int64(n), request: eachToken(toks), wantStatus: http.StatusOK})
	if lr.errors > 0 {
		return rssResult{}, fmt.Errorf("rss: %d errors, first: %v\n%s", lr.errors, lr.firstErr, p.tail())
	}
	cpu1, err := cpuTime(p.pid())
	if err != nil {
		return rssResult{}, err
	}
	after, err := scrape(ctx, p.admin)
	if err != nil {
		return rssResult{}, err
	}
	// Again, the first tokens: CPU per request with that many cached.
	hitN := int64(min(n, 200_000))
	hl := runLoad(ctx, loadSpec{addr: p.public, conns: s.o.conns, duration: 30 * time.Minute, limit: hitN, request: eachToken(toks), wantStatus: http.StatusOK})
	if hl.errors > 0 {
		return rssResult{}, fmt.Errorf("rss: second pass: %d errors, first: %v\n%s", hl.errors, hl.firstErr, p.tail())
	}
	cpu2, err := cpuTime(p.pid())
	if err != nil {
		return rssResult{}, err
	}
	hwm, rss, err := memStatus(p.pid())
	if err != nil {
		return rssResult{}, err
	}
	again, err := scrape(ctx, p.admin)
	if err != nil {
		return rssResult{}, err
	}
	localHits := func(m metrics) float64 {
		return m.sum("authgate_cache_requests_total", "cache", "tokens", "tier", "local", "result", "hit")
	}
	if s.o.profile != "" {
		if err := s.heapProfile(ctx, p); err != nil {
			return rssResult{}, err
		}
	}
	return rssResult{
		tokens: n, startRSS: startRSS, peakRSS: hwm, rss: rss, fileRSS: fileRSS(p.pid()), elapsed: lr.elapsed,
		verifications: after.sum("authgate_verify_total", "result", "ok") - before.sum("authgate_verify_total", "result", "ok"),
		cacheBytes:    after.sum("authgate_cache_local_bytes"),
		evictions:     after.sum("authgate_cache_evictions_total"),
		memLimit:      after.sum("go_gc_gomemlimit_bytes"),
		heapAlloc:     after.sum("go_memstats_heap_alloc_bytes"),
		fillCPU:       (cpu1 - cpu0) / time.Duration(max(lr.requests, 1)),
		hitCPU:        (cpu2 - cpu1) / time.Duration(max(hl.requests, 1)),
		hitRequests:   hl.requests,
		hits:          int64(localHits(again) - localHits(after)),
	}, nil
}

// startupResult is exec to /readyz 200, over several starts.
type startupResult struct {
	times []time.Duration // sorted
	keys  int64           // key server requests per start
}

// startupRuns starts authgate with the production configuration several
// times and times exec to the first 200 from /readyz, polled every
// millisecond (a fresh connection each time, as a kubelet probe does).
// Keys come from the local key server, fetched before the listeners open.
func (s *suite) startupRuns(ctx context.Context) (startupResult, error) {
	var res startupResult
	for i := range s.o.startups {
		pub, adm, err := freePorts()
		if err != nil {
			return res, err
		}
		path, err := s.fx.writeConfig(scStartup, agConfig{publicAddr: pub, adminAddr: adm})
		if err != nil {
			return res, err
		}
		keys0 := s.ks.requests.Load()
		cmd := exec.Command(s.fx.bin, "serve", "--config", path)
		cmd.Env = s.fx.env()
		logPath := filepath.Join(s.dir, fmt.Sprintf("startup-%d.log", i))
		out, err := os.Create(logPath)
		if err != nil {
			return res, err
		}
		cmd.Stdout, cmd.Stderr = out, out
		p := &proc{name: "authgate startup", cmd: cmd, logPath: logPath, done: make(chan struct{})}
		t0 := time.Now()
		err = cmd.Start()
		out.Close()
		if err != nil {
			return res, err
		}
		go func() {
			p.err = cmd.Wait()
			close(p.done)
		}()
		err = waitReady(ctx, "http://"+adm+"/readyz", 10*time.Second, time.Millisecond)
		d := time.Since(t0)
		p.stop()
		if err != nil {
			return res, fmt.Errorf("startup: %w\n%s", err, p.tail())
		}
		res.times = append(res.times, d)
		res.keys = s.ks.requests.Load() - keys0
	}
	slices.Sort(res.times)
	s.logf("startup: %v", res.times)
	return res, nil
}

// freePorts returns two loopback addresses with ports free right now.
func freePorts() (string, string, error) {
	var addrs [2]string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", err
		}
		lns = append(lns, ln)
		addrs[i] = ln.Addr().String()
	}
	return addrs[0], addrs[1], nil
}

// heapProfile saves the live heap of p (after a GC) as rss.heap.pprof,
// with a summary by in-use bytes.
func (s *suite) heapProfile(ctx context.Context, p *proc) error {
	if err := os.MkdirAll(s.o.profile, 0o755); err != nil {
		return err
	}
	b, err := getURL(ctx, http.DefaultClient, "http://"+p.admin+"/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	path := filepath.Join(s.o.profile, "rss.heap.pprof")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, s.goTool, "tool", "pprof", "-top", "-nodecount=35", "-sample_index=inuse_space", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w\n%s", err, out)
	}
	return os.WriteFile(filepath.Join(s.o.profile, "rss.heap.txt"), out, 0o644)
}

//go:build faults

package main

// The harness of the fault suite (faults_test.go): a private PostgreSQL
// cluster and a private redis-server that a test stops and starts again
// mid-run, never the shared services on 5432 and 6379; a bounded load
// generator that records every request; and a scraper for the admin
// listener's /metrics. Run with:
//
//	TEST_REQUIRE_FAULTS=1 go test -race -tags faults -run Fault -count=1 ./cmd/authgate/

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// envRequireFaults, set to 1 in CI, turns a missing pg_ctl or
// redis-server from a skip into a failure.
const envRequireFaults = "TEST_REQUIRE_FAULTS"

// faultsMissing skips the test, or fails it when TEST_REQUIRE_FAULTS=1.
func faultsMissing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv(envRequireFaults) == "1" {
		t.Fatalf("%s, and %s=1 requires it (apt-get install postgresql redis-server)", why, envRequireFaults)
	}
	t.Skipf("%s; install it (apt-get install postgresql redis-server) or set %s=1 to make this a failure", why, envRequireFaults)
}

// pgCluster is a private PostgreSQL cluster in a temporary directory,
// listening on 127.0.0.1 at a port of its own, with trust authentication
// for the user postgres.
type pgCluster struct {
	bin  string // directory of initdb, pg_ctl, postgres
	dir  string // the cluster's root: data/, the socket, the log
	port string
	// cred runs the PostgreSQL programs as the postgres OS user when the
	// test runs as root, which initdb and postgres refuse.
	cred *syscall.Credential
	// DBURL is the URL of the test database.
	DBURL string
}

// findPostgresBin returns the directory with pg_ctl and initdb: the one on
// PATH, else the newest /usr/lib/postgresql/*/bin (Debian keeps them off
// PATH).
func findPostgresBin(t *testing.T) string {
	t.Helper()
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return n
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) < version(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if has(dirs[i]) {
			return dirs[i]
		}
	}
	faultsMissing(t, "pg_ctl and initdb are neither on PATH nor in /usr/lib/postgresql/*/bin")
	return ""
}

// startPostgres creates a cluster with initdb, starts it and creates the
// database authgate_faults. The cluster is stopped and removed at cleanup.
func startPostgres(t *testing.T) *pgCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test runs PostgreSQL; skipped with -short")
	}
	c := &pgCluster{bin: findPostgresBin(t)}
	// Not t.TempDir: its parent is private to root, and the postgres user
	// must be able to enter the directory.
	dir, err := os.MkdirTemp("", "authgate-faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			faultsMissing(t, "running as root and there is no postgres user to run initdb and postgres as")
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
	}
	_, c.port, _ = net.SplitHostPort(e2eFreeAddr(t))
	if out, err := c.run(60*time.Second, "initdb", "-D", c.data(), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Immediate: nothing in the cluster is worth a checkpoint. A
		// cluster that is not running makes pg_ctl fail harmlessly.
		_, _ = c.run(30*time.Second, "pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop")
	})
	c.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		t.Fatalf("connect to the private cluster: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE authgate_faults"); err != nil {
		t.Fatal(err)
	}
	c.DBURL = c.url("authgate_faults")
	return c
}

func (c *pgCluster) data() string { return filepath.Join(c.dir, "data") }

func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%s/%s?sslmode=disable", c.port, db)
}

// run runs one of the cluster's programs as the cluster's owner.
func (c *pgCluster) run(timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir // the postgres user may not enter the test's own directory
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

// start starts the cluster on its port and waits until it accepts
// connections. The server's output goes to pg.log in the cluster's root.
func (c *pgCluster) start(t *testing.T) {
	t.Helper()
	opts := fmt.Sprintf("-p %s -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c full_page_writes=off", c.port, c.dir)
	if out, err := c.run(60*time.Second, "pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "pg.log"), "-o", opts, "-w", "-t", "30", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "pg.log"))
		t.Fatalf("pg_ctl start: %v\n%s\npg.log:\n%s", err, out, log)
	}
}

// stop stops the cluster with a fast shutdown: sessions are ended, in-flight
// statements rolled back.
func (c *pgCluster) stop(t *testing.T) {
	t.Helper()
	if out, err := c.run(60*time.Second, "pg_ctl", "-D", c.data(), "-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// redisServer is a private redis-server on a port of its own, keeping
// nothing on disk, that a test can kill, freeze and start again on the same
// port.
type redisServer struct {
	t    *testing.T
	bin  string
	dir  string
	Addr string
	proc *e2eProcess
}

// startRedis starts a private redis-server, stopped at cleanup.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test runs redis-server; skipped with -short")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		faultsMissing(t, "redis-server is not on PATH")
	}
	r := &redisServer{t: t, bin: bin, dir: t.TempDir(), Addr: e2eFreeAddr(t)}
	r.start()
	return r
}

// start runs redis-server on r.Addr and waits until it answers PING.
func (r *redisServer) start() {
	t := r.t
	t.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	for attempt := 1; ; attempt++ {
		cmd := exec.Command(r.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--dir", r.dir, "--loglevel", "warning")
		p := startProcess(t, "redis-server", cmd)
		// Cleanups run last first: a frozen server is thawed before
		// startProcess's cleanup asks it to stop.
		t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
		r.proc = p
		deadline := time.Now().Add(5 * time.Second)
		for !p.exited() && time.Now().Before(deadline) {
			if v, err := r.command("PING"); err == nil && v == "PONG" {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !p.exited() {
			t.Fatalf("redis-server does not answer PING on %s after 5s\n%s", r.Addr, p.out)
		}
		// The port of a killed server can be busy for a moment.
		if attempt == 20 || !strings.Contains(p.out.String(), "in use") {
			t.Fatalf("redis-server exited: %v\n%s", p.err, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill kills the server with SIGKILL, as a crash or an OOM kill would, and
// waits until it is gone.
func (r *redisServer) kill() {
	_ = r.proc.cmd.Process.Kill()
	<-r.proc.done
}

// freeze stops the server with SIGSTOP: connections stay open and new ones
// are accepted by the kernel, but nothing answers, as with a hung host.
func (r *redisServer) freeze() { _ = r.proc.cmd.Process.Signal(syscall.SIGSTOP) }

// thaw resumes a frozen server.
func (r *redisServer) thaw() { _ = r.proc.cmd.Process.Signal(syscall.SIGCONT) }

// command sends one command on a new connection and returns a simple
// string or integer reply. The test speaks RESP itself: go-redis belongs
// to internal/cache alone.
func (r *redisServer) command(args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"), strings.HasPrefix(line, ":"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", errors.New(line[1:])
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// dbsize returns the number of keys, or -1 if Redis does not answer.
func (r *redisServer) dbsize() int {
	v, err := r.command("DBSIZE")
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// loadSpec configures a load run: workers goroutines, each with its own
// keep-alive connection, send requests one after the other until stop is
// called or maxDuration has passed.
type loadSpec struct {
	workers     int
	maxDuration time.Duration
	// timeout bounds one request on the client side; a request that hits
	// it is recorded as an error.
	timeout time.Duration
	// pace is the pause between two requests of one worker, which keeps
	// the load below what saturates the machine's two cores.
	pace time.Duration
	// next returns the next request of worker w and a tag that the test
	// reads back from the results.
	next func(w int) (*http.Request, string)
}

// loadResult is one request of a load run.
type loadResult struct {
	tag    string
	worker int
	start  time.Time
	wrote  time.Time // when the request was written; zero if it never was
	end    time.Time
	reused bool // sent on a kept-alive connection
	status int  // 0 when err is set
	err    error
	// userID and federation are the X-User-Id and X-User-Federation of
	// the response (forward-auth answers carry them).
	userID, federation string
}

func (r loadResult) latency() time.Duration { return r.end.Sub(r.start) }

// loadRun is a running load generator.
type loadRun struct {
	stopc    chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu      sync.Mutex
	results []loadResult
}

// startLoad starts the workers; the run ends at stop, at maxDuration, or at
// cleanup.
func startLoad(t *testing.T, cfg loadSpec) *loadRun {
	t.Helper()
	l := &loadRun{stopc: make(chan struct{})}
	deadline := time.Now().Add(cfg.maxDuration)
	for w := range cfg.workers {
		tr := &http.Transport{
			MaxIdleConnsPerHost: 1,
			DisableCompression:  true,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		}
		client := &http.Client{Timeout: cfg.timeout, Transport: tr}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			for time.Now().Before(deadline) {
				select {
				case <-l.stopc:
					return
				default:
				}
				req, tag := cfg.next(w)
				res := doLoadRequest(client, req)
				res.tag, res.worker = tag, w
				l.mu.Lock()
				l.results = append(l.results, res)
				l.mu.Unlock()
				pause := cfg.pace
				if res.err != nil {
					// A refused connection fails at once; do not spin.
					pause = max(pause, 10*time.Millisecond)
				}
				if pause > 0 {
					select {
					case <-l.stopc:
						return
					case <-time.After(pause):
					}
				}
			}
		}()
	}
	t.Cleanup(func() { l.stop() })
	return l
}

func doLoadRequest(client *http.Client, req *http.Request) loadResult {
	var res loadResult
	var mu sync.Mutex // the trace hooks run on the transport's goroutines
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			mu.Lock()
			res.reused = info.Reused
			mu.Unlock()
		},
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			mu.Lock()
			if info.Err == nil && res.wrote.IsZero() {
				res.wrote = time.Now()
			}
			mu.Unlock()
		},
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	start := time.Now()
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	end := time.Now()
	mu.Lock()
	defer mu.Unlock()
	res.start, res.end, res.err = start, end, err
	if resp != nil {
		res.status = resp.StatusCode
		res.userID = resp.Header.Get("X-User-Id")
		res.federation = resp.Header.Get("X-User-Federation")
	}
	if err != nil {
		res.status = 0
	}
	return res
}

// stop ends the run, waits for the requests in flight and returns every
// result in the order they ended.
func (l *loadRun) stop() []loadResult {
	l.stopOnce.Do(func() { close(l.stopc) })
	l.wg.Wait()
	return l.snapshot()
}

// snapshot returns the results so far.
func (l *loadRun) snapshot() []loadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// waitFor polls the results until one that started at or after since
// satisfies ok, and returns it; it fails the test after d.
func (l *loadRun) waitFor(t *testing.T, d time.Duration, what string, since time.Time, ok func(loadResult) bool) loadResult {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		l.mu.Lock()
		for _, r := range l.results {
			if !r.start.Before(since) && ok(r) {
				l.mu.Unlock()
				return r
			}
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// overlapping returns the results of requests in flight at some point in
// [from, to).
func overlapping(rs []loadResult, from, to time.Time) []loadResult {
	var out []loadResult
	for _, r := range rs {
		if r.start.Before(to) && r.end.After(from) {
			out = append(out, r)
		}
	}
	return out
}

// within returns the results of requests that started and ended in
// [from, to).
func within(rs []loadResult, from, to time.Time) []loadResult {
	var out []loadResult
	for _, r := range rs {
		if !r.start.Before(from) && r.end.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// loadStats summarises results for the log.
type loadStats struct {
	sent, ok  int
	byStatus  map[int]int // statuses other than 200
	errs      int
	errSample error
	max, p99  time.Duration
	slow      int // requests that took over slowLatency
}

// slowLatency is what loadStats counts as slow: far above a request that
// waits for nothing (milliseconds), below every timeout of the suite.
const slowLatency = 250 * time.Millisecond

func (s loadStats) failed() int { return s.sent - s.ok }

func summarize(rs []loadResult) loadStats {
	s := loadStats{sent: len(rs), byStatus: map[int]int{}}
	lat := make([]time.Duration, 0, len(rs))
	for _, r := range rs {
		switch {
		case r.err != nil:
			s.errs++
			if s.errSample == nil {
				s.errSample = r.err
			}
		case r.status == http.StatusOK:
			s.ok++
		default:
			s.byStatus[r.status]++
		}
		lat = append(lat, r.latency())
		if r.latency() > slowLatency {
			s.slow++
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.max = lat[len(lat)-1]
		s.p99 = lat[(len(lat)*99)/100]
	}
	return s
}

func (s loadStats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, ok %d, failed %d", s.sent, s.ok, s.failed())
	if s.failed() > 0 {
		var parts []string
		codes := make([]int, 0, len(s.byStatus))
		for c := range s.byStatus {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d: %d", c, s.byStatus[c]))
		}
		if s.errs > 0 {
			parts = append(parts, fmt.Sprintf("errors: %d, first: %v", s.errs, s.errSample))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, ", latency p99 %s max %s, %d over %s", s.p99.Round(100*time.Microsecond), s.max.Round(100*time.Microsecond), s.slow, slowLatency)
	return b.String()
}

// metricLine matches one sample of the text exposition format.
var (
	metricLine  = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)
	metricLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrapeMetric returns the sum of the samples of name on the admin
// listener's /metrics whose labels include every pair of labels.
func scrapeMetric(admin, name string, labels map[string]string) (float64, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: status %d", resp.StatusCode)
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != name {
			continue
		}
		got := map[string]string{}
		for _, l := range metricLabel.FindAllStringSubmatch(m[2], -1) {
			got[l[1]] = l[2]
		}
		match := true
		for k, v := range labels {
			if got[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", sc.Text(), err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no sample of %s%v", name, labels)
	}
	return sum, nil
}

// mustScrape is scrapeMetric failing the test on error.
func mustScrape(t *testing.T, admin, name string, labels map[string]string) float64 {
	t.Helper()
	v, err := scrapeMetric(admin, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readyAnswer is what /readyz answered, and how fast.
type readyAnswer struct {
	code   int
	status string // ready, degraded, not_ready, draining
	took   time.Duration
}

func (a readyAnswer) String() string {
	return fmt.Sprintf("%d %s in %s", a.code, a.status, a.took.Round(time.Millisecond))
}

// readiness asks the admin listener's /readyz.
func readiness(t *testing.T, admin string) readyAnswer {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	return readyAnswer{code: resp.StatusCode, status: body.Status, took: time.Since(start)}
}

// isConnRefused reports a dial that found no listener.
func isConnRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

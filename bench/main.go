// Command bench is authgate's load benchmark suite. It builds the authgate
// binary, starts it with the production configuration next to a bare
// net/http server (the floor), a trivial upstream, a bare
// httputil.ReverseProxy and, for fa-cold, a bare RS256 verifier (the RS256
// floor), all on 127.0.0.1, and drives each with a closed-loop load
// generator over keep-alive connections. Runs are interleaved (floor, X,
// floor, X, ... over several rounds) and every ratio is taken against the
// floor measured in the same round. It prints a
// Markdown report with the targets of issue 6; see BENCHMARKS.md.
//
// Usage:
//
//	go run ./bench [flags]          the suite (a few minutes)
//	go run ./bench -smoke           a few seconds; fails on errors, not on numbers
//	go run ./bench floor|upstream|revproxy|rs256 [-upstream URL] [-cert PEM]
//	                                one of the suite's own servers
//
// The production configuration is the one issue 6 names: metrics, JSON
// access log (to a file), federation with PostgreSQL; Redis, the tier that
// replicas share, only where a scenario says so. It needs PostgreSQL
// (-database-url, default $TEST_DATABASE_URL or
// postgres://postgres@127.0.0.1:5432/test) and Redis (-redis, default
// 127.0.0.1:6379); it creates its own schema and key prefix and removes
// them at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case cmdFloor, cmdUpstream, cmdRevProxy, cmdRS256:
			if err := runServer(os.Args[1], os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
				os.Exit(1)
			}
			return
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Scenario names, for -scenarios.
const (
	scFAHit    = "fa-hit"        // forward-auth, one hot RS256 Firebase token (in-process hit)
	scFANoLog  = "fa-nolog"      // fa-hit with the access log off: how much of the gap the log is
	scFACold   = "fa-cold"       // forward-auth, a new token of a known user per request
	scFAColdR  = "fa-cold-redis" // fa-cold with Redis as the shared tier: the lookup and write a new token costs there
	scFANew    = "fa-new"        // forward-auth, a new token of a new user per request
	scFARedis  = "fa-redis"      // forward-auth, hot token served from Redis
	scFAAssert = "fa-assert"     // fa-hit with the signed identity assertion on, against fa-hit's configuration
	scFAUsage  = "fa-usage"      // forward-auth, 256 hot tokens, Redis tier, usage telemetry on against off
	scProxy    = "proxy"         // reverse-proxy mode against a bare httputil.ReverseProxy
	scRSS      = "rss"           // peak RSS with many distinct cached tokens
	scStartup  = "startup"       // exec to /readyz 200
)

var allScenarios = []string{scFAHit, scFANoLog, scFAAssert, scFACold, scFAColdR, scFANew, scFARedis, scFAUsage, scProxy, scRSS, scStartup}

type options struct {
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	conns       int
	rate        float64
	scenarios   []string
	coldTokens  int
	coldUsers   int
	rssTokens   int
	startups    int
	profile     string
	allocs      bool
	databaseURL string
	redisAddr   string
	out         string
	logSink     string
	keep        bool
	smoke       bool
	args        []string
}

func (o *options) has(name string) bool {
	for _, s := range o.scenarios {
		if s == name {
			return true
		}
	}
	return false
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{args: args}
	dbDefault := os.Getenv("TEST_DATABASE_URL")
	if dbDefault == "" {
		dbDefault = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	var scenarios string
	fs.DurationVar(&o.duration, "duration", 4*time.Second, "length of one measured run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run")
	fs.IntVar(&o.rounds, "rounds", 5, "interleaved rounds (floor, X, floor, X, ...)")
	fs.IntVar(&o.conns, "conns", 32, "keep-alive connections of the load generator")
	fs.Float64Var(&o.rate, "rate", 0, "requests per second in all, paced (0 = closed loop, as fast as answers come); with a rate every server gets the same load, and CPU per request is compared at equal load")
	fs.StringVar(&scenarios, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios: "+strings.Join(allScenarios, ", "))
	fs.IntVar(&o.coldTokens, "cold-tokens", 4000, "tokens per measured run of fa-cold and fa-new (RS256, minted before the runs; a run ends when they are used up)")
	fs.IntVar(&o.coldUsers, "cold-users", 256, "users whose new tokens fa-cold sends")
	fs.IntVar(&o.rssTokens, "rss-tokens", 100_000, "distinct tokens (HS256 legacy, of as many users) cached for the rss scenario; 1000000 for the growth table's last row (about 5 minutes)")
	fs.IntVar(&o.startups, "startups", 5, "starts measured by the startup scenario")
	fs.StringVar(&o.profile, "profile", "", "directory: after the rounds, capture a CPU and an allocation profile of authgate from its admin listener during one extra run of each authgate scenario")
	fs.BoolVar(&o.allocs, "allocs", true, "run the handler benchmark (BenchmarkForwardAuth cache=hit) for the allocation target")
	fs.StringVar(&o.databaseURL, "database-url", dbDefault, "PostgreSQL for federation (a schema is created and dropped)")
	fs.StringVar(&o.redisAddr, "redis", "127.0.0.1:6379", "Redis for the shared cache tier (a unique key prefix is used and cleared)")
	fs.StringVar(&o.logSink, "log", "pipe", "where authgate's JSON log (with the access log) goes: pipe (stdout to a pipe the suite drains into a file, as a container runtime does) or file (appended to a file directly)")
	fs.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs, binary)")
	fs.BoolVar(&o.smoke, "smoke", false, "a few seconds in all: every scenario once, tiny runs; for CI (fails on errors, never on numbers)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.smoke {
		smoke := map[string]func(){
			"duration":    func() { o.duration = 300 * time.Millisecond },
			"warmup":      func() { o.warmup = 100 * time.Millisecond },
			"rounds":      func() { o.rounds = 1 },
			"conns":       func() { o.conns = 8 },
			"cold-tokens": func() { o.coldTokens = 200 },
			"cold-users":  func() { o.coldUsers = 16 },
			"rss-tokens":  func() { o.rssTokens = 2000 },
			"startups":    func() { o.startups = 1 },
			"allocs":      func() { o.allocs = false },
		}
		for name, apply := range smoke {
			if !set[name] {
				apply()
			}
		}
	}
	for _, s := range strings.Split(scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		known := false
		for _, a := range allScenarios {
			known = known || a == s
		}
		if !known {
			return o, fmt.Errorf("-scenarios: unknown scenario %q (known: %s)", s, strings.Join(allScenarios, ", "))
		}
		o.scenarios = append(o.scenarios, s)
	}
	switch {
	case o.logSink != "pipe" && o.logSink != "file":
		return o, fmt.Errorf("-log must be pipe or file")
	case o.duration <= 0 || o.warmup < 0:
		return o, fmt.Errorf("-duration must be positive and -warmup not negative")
	case o.rate < 0:
		return o, fmt.Errorf("-rate must not be negative")
	case o.rounds < 1 || o.conns < 1 || o.startups < 1:
		return o, fmt.Errorf("-rounds, -conns and -startups must be at least 1")
	case o.coldTokens < 10 || o.coldUsers < 1 || o.rssTokens < 1:
		return o, fmt.Errorf("-cold-tokens must be at least 10, -cold-users and -rss-tokens at least 1")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	s, err := newSuite(ctx, o, stderr)
	if err != nil {
		return err
	}
	rep, runErr := s.run(ctx)
	closeErr := s.close()
	if rep != nil {
		md := rep.markdown()
		fmt.Fprint(stdout, md)
		if o.out != "" {
			if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
				return err
			}
		}
	}
	if runErr != nil {
		return runErr
	}
	return closeErr
}

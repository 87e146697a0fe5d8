package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

type report struct {
	o          options
	mach       *machine
	started    time.Time
	finished   time.Time
	pairs      []*pairResult
	allocs     int // handler benchmark allocs/op; 0 = not run
	rss        rssResult
	startup    startupResult
	profileDir string
}

type pairResult struct {
	spec   pairSpec
	rounds [][]runStat // base, x, then sig if the pair has one
}

var titles = map[string]string{
	"floor":       "bare net/http answering 200 (floor)",
	"revproxy":    "bare httputil.ReverseProxy → upstream",
	cmdRS256:      "bare net/http verifying the token's RS256 signature, 200 (RS256 floor)",
	scFAHit:       "forward-auth, hot RS256 token (in-process hit)",
	scFANoLog:     "the same with the access log off (diagnostic)",
	scFACold:      "forward-auth, new RS256 token per request, known user",
	scFAColdR:     "the same with Redis as the shared tier (lookup and write per token)",
	scFANew:       "forward-auth, new RS256 token per request, new user (row insert)",
	scFARedis:     "forward-auth, 256 hot tokens from Redis (in-process tier 5ms)",
	scProxy:       "reverse proxy → upstream",
	scFAAssertOff: "fa-hit's configuration and token (assertion off)",
	scFAAssert:    "the same with the signed identity assertion on (ES256)",
	scFAUsageOff:  "forward-auth, 256 hot tokens, Redis tier, usage telemetry off",
	scFAUsage:     "the same with usage telemetry on (flushed every 1s)",
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// Sides of a round.
const (
	sideBase = iota
	sideX
	sideSig
)

// column extracts one number per round from base, x or sig.
func (p *pairResult) column(side int, f func(runStat) float64) []float64 {
	out := make([]float64, len(p.rounds))
	for i, r := range p.rounds {
		out[i] = f(r[side])
	}
	return out
}

// ratios returns x/base of f per round.
func (p *pairResult) ratios(f func(runStat) float64) []float64 {
	return p.ratiosOf(sideX, sideBase, f)
}

// ratiosOf returns f of side num over f of side den, per round.
func (p *pairResult) ratiosOf(num, den int, f func(runStat) float64) []float64 {
	out := make([]float64, len(p.rounds))
	for i, r := range p.rounds {
		out[i] = f(r[num]) / f(r[den])
	}
	return out
}

// fmtRounds formats v in round order.
func fmtRounds(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}

func rps(r runStat) float64    { return r.rps }
func cpuReq(r runStat) float64 { return float64(r.cpuPerReq) }
func p50(r runStat) float64    { return float64(r.p50) }
func p99(r runStat) float64    { return float64(r.p99) }
func peak(r runStat) float64   { return float64(r.peakRSS) }
func counter(name string) func(runStat) float64 {
	return func(r runStat) float64 { return r.perReq[name] }
}

// pair returns the pair of a scenario, or nil.
func (r *report) pair(sc string) *pairResult {
	for _, p := range r.pairs {
		if p.spec.scenario == sc && len(p.rounds) > 0 {
			return p
		}
	}
	return nil
}

func fmtDur(ns float64) string {
	d := time.Duration(ns)
	switch {
	case math.IsNaN(ns):
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", ns/1e3)
	default:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	}
}

func fmtMiB(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func fmtRange(v []float64, format string) string {
	m := fmt.Sprintf(format, median(v))
	if len(v) < 2 {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, fmt.Sprintf(format, slices.Min(v)), fmt.Sprintf(format, slices.Max(v)))
}

type targetRow struct {
	what, want, got string
	ok              bool
}

// targets evaluates the targets of issue 6 on what was measured.
func (r *report) targets() []targetRow {
	var rows []targetRow
	if p := r.pair(scFAHit); p != nil {
		cpu, tput := median(p.ratios(cpuReq)), median(p.ratios(rps))
		rows = append(rows,
			targetRow{"forward-auth hot token: CPU per request", "≤ 1.5× floor", fmt.Sprintf("%.2f×", cpu), cpu <= 1.5},
			targetRow{"forward-auth hot token: throughput", "≥ 0.75× floor", fmt.Sprintf("%.2f×", tput), tput >= 0.75})
	}
	if r.allocs > 0 {
		rows = append(rows, targetRow{"forward-auth hot token: allocations (BenchmarkForwardAuth/cache=hit/accesslog=on)", "≤ 10 per request", fmt.Sprintf("%d", r.allocs), r.allocs <= 10})
	}
	if p := r.pair(scFAAssert); p != nil {
		cpu := median(p.ratios(cpuReq))
		rows = append(rows, targetRow{"forward-auth hot token with the assertion on: CPU per request", "≤ 1.10× the same without (fa-hit)", fmt.Sprintf("%.2f×", cpu), cpu <= 1.10})
	}
	if p := r.pair(scFAUsage); p != nil {
		cpu := median(p.ratios(cpuReq))
		extra := median(p.column(1, counter(ctrTrips))) - median(p.column(0, counter(ctrTrips)))
		rows = append(rows, targetRow{"usage telemetry: extra Redis round trips per request, off the request path",
			"≤ 1", fmt.Sprintf("%.4f (CPU per request %.2f× telemetry off)", extra, cpu), extra <= 1})
	}
	if p := r.pair(scFACold); p != nil {
		cpu := median(p.ratios(cpuReq))
		rows = append(rows, targetRow{"new token per request: CPU per request", "≤ 3.5× floor (issue 13)", fmt.Sprintf("%.2f×", cpu), cpu <= 3.5})
	}
	if p := r.pair(scFARedis); p != nil {
		tok := median(p.column(1, counter(ctrTokensRedis)))
		usr := median(p.column(1, counter(ctrUsersRedis)))
		db := median(p.column(1, counter(ctrDB)))
		ver := median(p.column(1, counter(ctrVerify)))
		trips := median(p.column(1, counter(ctrTrips)))
		rows = append(rows, targetRow{"Redis-tier hit: Redis round trips and database round trips per request",
			"1 and 0",
			fmt.Sprintf("%.2f (lookups: token %.2f, user row %.2f) and %.2f; %.2f verifications", trips, tok, usr, db, ver),
			math.Abs(trips-1) < 0.01 && db < 0.001 && ver < 0.001})
	}
	if p := r.pair(scProxy); p != nil {
		tput := median(p.ratios(rps))
		rows = append(rows, targetRow{"reverse-proxy mode: throughput", "≥ 0.85× bare httputil.ReverseProxy", fmt.Sprintf("%.2f×", tput), tput >= 0.85})
	}
	if r.rss.tokens > 0 {
		limit, target := int64(64<<20), "≤ 64 MiB" // issue 13: 100 000 tokens
		if r.rss.tokens > 100_000 {
			limit, target = 400<<20, "≤ 400 MiB" // and 1 000 000
		}
		rows = append(rows, targetRow{fmt.Sprintf("peak RSS with %d distinct cached tokens", r.rss.tokens), target, fmtMiB(float64(r.rss.peakRSS)), r.rss.peakRSS <= limit})
	}
	if len(r.startup.times) > 0 {
		med := r.startup.times[len(r.startup.times)/2]
		rows = append(rows, targetRow{"start to ready (exec → /readyz 200), keys prefetched", "≤ 100 ms",
			fmt.Sprintf("%s median, %s max", fmtDur(float64(med)), fmtDur(float64(slices.Max(r.startup.times)))), med <= 100*time.Millisecond})
	}
	return rows
}

func (r *report) markdown() string {
	var b strings.Builder
	o := r.o
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("### authgate load suite, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	w("| | |\n|---|---|\n")
	w("| command | `go run ./bench %s` |\n", strings.Join(o.args, " "))
	w("| CPU | %s, %d cores |\n", r.mach.cpu, r.mach.cores)
	if r.mach.memory != "" {
		w("| memory | %s |\n", r.mach.memory)
	}
	w("| Go | %s |\n| kernel | %s |\n", r.mach.goVer, r.mach.kernel)
	w("| 1-minute load average | %.2f at start, %.2f at end |\n", r.mach.loadAvg[0], r.mach.loadAvg[1])
	loop := "closed loop"
	if o.rate > 0 {
		loop = fmt.Sprintf("paced at %.0f requests/s in all", o.rate)
	}
	w("| method | %d interleaved rounds (base, X, base, X …); %s runs after %s warm-up; %d keep-alive connections, %s; all on 127.0.0.1 |\n",
		o.rounds, o.duration, o.warmup, o.conns, loop)
	sink := "stdout, a pipe that the suite drains into a file (as a container runtime drains it)"
	if o.logSink == "file" {
		sink = "appended to a file directly"
	}
	w("| authgate log | JSON, access log on (one line per request): %s |\n", sink)
	if !r.finished.IsZero() {
		w("| duration | %s |\n", r.finished.Sub(r.started).Round(time.Second))
	}
	w("\n")

	if len(r.pairs) > 0 {
		w("CPU per request is the server process's utime+stime (`/proc/<pid>/stat`) over the run divided by the requests answered; peak RSS is its `VmHWM`, reset before each run. Values are medians over the rounds; ratios are the median of the per-round ratios to the base measured in the same round (range in brackets). fa-cold and fa-new runs last %d requests (pre-minted tokens), not %s.\n\n", o.coldTokens, o.duration)
		w("| scenario | server | req/s | p50 | p99 | CPU/request | peak RSS | req/s ÷ base | CPU/request ÷ base |\n")
		w("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range r.pairs {
			if len(p.rounds) == 0 {
				continue
			}
			sides := []*target{p.spec.base, p.spec.x}
			if p.spec.sig != nil {
				sides = append(sides, p.spec.sig)
			}
			for side, t := range sides {
				ratioR, ratioC := "base", "base"
				if side != sideBase {
					ratioR = fmtRange(p.ratiosOf(side, sideBase, rps), "%.2f")
					ratioC = fmtRange(p.ratiosOf(side, sideBase, cpuReq), "%.2f")
				}
				w("| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n", p.spec.scenario, titles[t.name],
					median(p.column(side, rps)), fmtDur(median(p.column(side, p50))), fmtDur(median(p.column(side, p99))),
					fmt.Sprintf("%.1f µs", median(p.column(side, cpuReq))/1e3), fmtMiB(median(p.column(side, peak))), ratioR, ratioC)
			}
		}
		w("\n")

		for _, p := range r.pairs {
			if p.spec.sig == nil || len(p.rounds) == 0 {
				continue
			}
			x, sig := p.column(sideX, cpuReq), p.column(sideSig, cpuReq)
			w("%s against the RS256 floor (the same requests to a bare net/http handler that verifies the token's RSA-2048 signature with crypto/rsa and answers 200; no JOSE header, no claims, no cache), in the same rounds: CPU per request ÷ the RS256 floor's %s; the RS256 floor's ÷ the floor's %s. Of %s per request, the bare RS256 verification and answer are %s.\n\n",
				p.spec.scenario, fmtRange(p.ratiosOf(sideX, sideSig, cpuReq), "%.2f"), fmtRange(p.ratiosOf(sideSig, sideBase, cpuReq), "%.2f"),
				fmt.Sprintf("%.1f µs", median(x)/1e3), fmt.Sprintf("%.1f µs", median(sig)/1e3))
		}

		w("Per-round CPU/request ratios (X ÷ base, in round order):\n\n")
		for _, p := range r.pairs {
			w("- %s: CPU %s; req/s %s", p.spec.scenario, fmtRounds(p.ratios(cpuReq)), fmtRounds(p.ratios(rps)))
			if p.spec.sig != nil {
				w("; CPU ÷ RS256 floor %s", fmtRounds(p.ratiosOf(sideX, sideSig, cpuReq)))
			}
			w("\n")
		}
		w("\n")

		w("authgate's own counters per request (from its `/metrics`, medians over the rounds):\n\n")
		w("| scenario |")
		for _, c := range counterOrder {
			w(" %s |", c)
		}
		w("\n|---|")
		for range counterOrder {
			w("---:|")
		}
		w("\n")
		for _, p := range r.pairs {
			if !p.spec.x.authg || len(p.rounds) == 0 {
				continue
			}
			w("| %s |", p.spec.scenario)
			for _, c := range counterOrder {
				w(" %.2f |", median(p.column(1, counter(c))))
			}
			w("\n")
		}
		w("\n")
	}
	if r.rss.tokens > 0 {
		w("Memory with many cached tokens (rss): a fresh authgate was sent %d distinct legacy HS256 tokens, one per user, each once (%s); %0.f verifications. RSS %s after start, %s at the end (%s of it file-backed: the binary's pages), peak (`VmHWM`) %s; Go heap in use after the fill %s, soft memory limit %s. The in-process entries are estimated at %s (`cache_local_bytes`, %.0f B per token and its user row held), %s. CPU per request %s while the tokens were new; then the first %d tokens again: %s per request, %d of them answered from the in-process tier.\n\n",
			r.rss.tokens, r.rss.elapsed.Round(time.Millisecond), r.rss.verifications, fmtMiB(float64(r.rss.startRSS)), fmtMiB(float64(r.rss.rss)), fmtMiB(float64(r.rss.fileRSS)), fmtMiB(float64(r.rss.peakRSS)),
			fmtMiB(r.rss.heapAlloc), fmtMiB(r.rss.memLimit),
			fmtMiB(r.rss.cacheBytes), 2*r.rss.cacheBytes/max(1, 2*float64(r.rss.tokens)-r.rss.evictions), evictedText(r.rss.evictions),
			r.rss.fillCPU, r.rss.hitRequests, r.rss.hitCPU, r.rss.hits)
	}
	if len(r.startup.times) > 0 {
		var parts []string
		for _, d := range r.startup.times {
			parts = append(parts, fmtDur(float64(d)))
		}
		w("Start to ready (startup): exec of `authgate serve` to the first 200 from `/readyz` (polled every 1 ms), production configuration, keys prefetched from the local key server (%d fetches per start): %s.\n\n",
			r.startup.keys, strings.Join(parts, ", "))
	}
	if rows := r.targets(); len(rows) > 0 {
		w("| target | wanted | measured | |\n|---|---|---|---|\n")
		for _, t := range rows {
			res := "pass"
			if !t.ok {
				res = "**miss**"
			}
			w("| %s | %s | %s | %s |\n", t.what, t.want, t.got, res)
		}
		w("\n")
	}
	if r.profileDir != "" {
		w("Profiles: %s (`<scenario>.cpu.pprof`, allocations as `-base <scenario>.allocs-before.pprof <scenario>.allocs-after.pprof`, summaries in `*.txt`).\n", r.profileDir)
	}
	return b.String()
}

// evictedText says how many entries the rss scenario's fill evicted.
func evictedText(n float64) string {
	if n == 0 {
		return "none evicted: every token and row is held"
	}
	return fmt.Sprintf("%.0f entries (tokens and rows) evicted for `cache.local_max_bytes`", n)
}

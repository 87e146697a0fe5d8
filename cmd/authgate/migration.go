package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/configerr"
	usagestats "github.com/authgate/authgate/internal/usage"
	"github.com/authgate/authgate/proxy"
)

// newMigration is the migration report of cfg over store and rec (nil
// when the telemetry is off).
func newMigration(cfg Config, store *federation.Store, rec *usagestats.Recorder) *proxy.Migration {
	m := &proxy.Migration{
		Users:         store.Repo(),
		LegacyEnabled: cfg.Verify.Legacy.Enabled,
		Routes:        cfg.Proxy.Routes,
	}
	if rec != nil {
		m.Usage = rec
	}
	if cfg.AuthAPI.LegacyPasswords.Enabled {
		m.PasswordColumn = cfg.AuthAPI.LegacyPasswords.Column
	}
	return m
}

// routeNames are the names of cfg's routes.
func routeNames(cfg Config) []string {
	names := make([]string, len(cfg.Proxy.Routes))
	for i, r := range cfg.Proxy.Routes {
		names[i] = r.Name
	}
	return names
}

// runMigration serves "authgate migration status --config FILE": the
// migration report as a table, read from PostgreSQL and Redis directly.
func runMigration(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprint(stderr, "usage: authgate migration status --config FILE\n")
		return exitError{2}
	}
	fs := flag.NewFlagSet("migration status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitError{2}
	}
	if *path == "" {
		fmt.Fprintln(stderr, "authgate migration status: --config FILE is required")
		return exitError{2}
	}
	cfg, err := loadConfig(*path, environ)
	if err != nil {
		printProblems(stderr, *path, err)
		return exitError{2}
	}
	if !cfg.Federation.Enabled {
		fmt.Fprintln(stderr, "authgate migration status: federation.enabled is false; there is no user table to report on")
		return exitError{2}
	}
	log, flush, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer flush()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := federation.Open(ctx, cfg.Federation, log, nil)
	if err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	defer store.Close()
	var rec *usagestats.Recorder
	note := ""
	switch {
	case !cfg.Usage.Enabled:
	case len(cfg.Cache.Redis.Addrs) == 0:
		note = "no Redis configured: each replica counts its own; see GET /admin/migration or /metrics on each"
	default:
		rdb, err := cache.OpenRedis(cfg.Cache.Redis, log)
		if err != nil {
			return fmt.Errorf("redis: %w", configerr.Prefix("cache.redis.", err))
		}
		defer rdb.Close()
		if rec, err = usagestats.New(cfg.Usage, rdb, routeNames(cfg), log, nil); err != nil {
			return fmt.Errorf("usage: %w", configerr.Prefix("usage.", err))
		}
	}
	m := newMigration(cfg, store, rec)
	m.UsageNote = note
	rep, err := m.Report(ctx)
	if err != nil {
		return err
	}
	printMigration(stdout, &rep)
	return nil
}

// printMigration writes rep as tables.
func printMigration(w io.Writer, rep *proxy.MigrationReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	u := rep.Users
	fmt.Fprintln(w, "USERS (live rows)")
	fmt.Fprintf(tw, "  total\t%d\n", u.Users)
	fmt.Fprintf(tw, "  linked to Firebase\t%d\t%s\n", u.Linked, percent(u.Linked, u.Users))
	fmt.Fprintf(tw, "  legacy only\t%d\t%s\n", u.LegacyOnly, percent(u.LegacyOnly, u.Users))
	if u.LegacyWithPasswordHash != nil {
		fmt.Fprintf(tw, "  legacy only, password hash to move\t%d\n", *u.LegacyWithPasswordHash)
	} else {
		fmt.Fprintf(tw, "  legacy only, password hash to move\t-\t(%s)\n", u.Note)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if t := rep.Telemetry; t != nil {
		scope := "all replicas"
		if !t.Shared {
			scope = "this replica"
		}
		fmt.Fprintf(w, "SEEN (%s; windows are UTC days, today included)\n", scope)
		fmt.Fprintf(tw, "  window\tlegacy users\tlegacy requests\tfirebase users\tfirebase requests\n")
		for _, win := range t.Windows {
			fmt.Fprintf(tw, "  %dd\t%d\t%d\t%d\t%d\n", win.Days, win.Legacy.Users, win.Legacy.Requests, win.Firebase.Users, win.Firebase.Requests)
		}
		tw.Flush()
		last := "not in the last 32 days"
		if t.LastLegacySeen != nil {
			last = t.LastLegacySeen.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  last legacy token seen: %s\n", last)
		if len(t.Routes) > 0 {
			fmt.Fprintf(tw, "  route (30d)\tlegacy users\tlegacy requests\tfirebase users\tfirebase requests\n")
			for _, r := range t.Routes {
				win := r.Windows[len(r.Windows)-1]
				fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\n", r.Route, win.Legacy.Users, win.Legacy.Requests, win.Firebase.Users, win.Firebase.Requests)
			}
			tw.Flush()
		}
	}
	if rep.TelemetryNote != "" {
		fmt.Fprintf(w, "  telemetry: %s\n", rep.TelemetryNote)
	}
	fmt.Fprintln(w)
	if !rep.LegacyVerification {
		fmt.Fprintln(w, "ROUTES ADMITTING LEGACY TOKENS: none (verify.legacy.enabled is false)")
		return
	}
	if len(rep.LegacyRoutes) == 0 {
		fmt.Fprintln(w, "ROUTES ADMITTING LEGACY TOKENS: none; verify.legacy can be turned off")
		return
	}
	fmt.Fprintln(w, "ROUTES ADMITTING LEGACY TOKENS")
	fmt.Fprintf(tw, "  route\tlegacy\tsunset\n")
	for _, r := range rep.LegacyRoutes {
		sunset := r.Sunset
		if sunset == "" {
			sunset = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Name, r.Policy, sunset)
	}
	tw.Flush()
}

func percent(n, of int64) string {
	if of == 0 {
		return ""
	}
	return strings.TrimSuffix(strconv.FormatFloat(float64(n)*100/float64(of), 'f', 1, 64), ".0") + "%"
}

// Command authgate is an identity-aware forward-auth proxy: it verifies each
// request's bearer token (a Firebase ID token or session cookie, or a legacy
// platform JWT), then proxies the request upstream with X-User-* identity
// headers or answers the auth subrequests of nginx, Traefik, Caddy and
// Envoy.
//
// Usage:
//
//	authgate serve --config FILE     run the proxy
//	authgate check-config --config FILE
//	authgate migrate-users --config FILE [--batch 1000] [--dry-run] [--limit N]
//	authgate dev                     run with an embedded development config
//	authgate version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/proxy"
)

// Set by the linker: -X main.version=... -X main.commit=...
var (
	version = "dev"
	commit  = "unknown"
)

const usage = `usage: authgate <command> [flags]

commands:
  serve --config FILE          run authgate
  check-config --config FILE   validate a configuration and print every problem
               [--print]      and print the configuration serve would run, secrets redacted
  migrate --config FILE        apply the user-table migrations (safe from several replicas)
  migration status --config FILE
                               how far the move off the legacy service has come
  migrate-users --config FILE  move the old service's password accounts to Firebase in bulk
               [--batch 1000] [--dry-run] [--limit N]
  dev                          run with an embedded development configuration
  version                      print version and commit

Every configuration key can be overridden by an AUTHGATE_ environment
variable: the key path upper-cased with "_" between parts, for example
AUTHGATE_UPSTREAM or AUTHGATE_VERIFY_LEGACY_SECRETS.
`

func main() {
	ownsProcess = true
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	default:
		// One line: a joined error's parts are separated by "; ".
		fmt.Fprintln(os.Stderr, "authgate:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

// exitError carries an exit code for a problem that has already been
// printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError{2}
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "authgate %s (commit %s, %s)\n", version, commit, runtime.Version())
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	case "serve", "check-config", "migrate":
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "", "configuration file (YAML)")
		var print *bool
		if cmd == "check-config" {
			print = fs.Bool("print", false, "print the effective configuration (defaults, file, AUTHGATE_* variables), secrets redacted")
		}
		if err := fs.Parse(args); err != nil {
			return exitError{2}
		}
		if *path == "" {
			fmt.Fprintf(stderr, "authgate %s: --config FILE is required\n", cmd)
			return exitError{2}
		}
		cfg, err := loadConfig(*path, environ)
		// Named files are checked before serve; missing Google application
		// default credentials only serve can tell for sure.
		credProblems, credWarnings := firebaseCredentialProblems(cfg, environ)
		if err == nil {
			// Weak, unreadable or mismatched assertion keys.
			if _, kerr := proxy.LoadAssertionKeys(cfg.Proxy.Assertion); kerr != nil {
				credProblems = append(credProblems, kerr)
			}
		}
		if cmd == "check-config" {
			for _, w := range credWarnings {
				fmt.Fprintf(stderr, "%s: warning: %s\n", *path, w)
			}
			for _, k := range cfg.ignored {
				fmt.Fprintf(stderr, "%s: warning: %s: %s: %s\n", *path, k.where, k.path, k.why)
			}
		}
		if err := errors.Join(append([]error{err}, credProblems...)...); err != nil {
			printProblems(stderr, *path, err)
			return exitError{2}
		}
		switch cmd {
		case "check-config":
			if *print {
				return printConfig(stdout, &cfg)
			}
			fmt.Fprintf(stdout, "%s: ok\n", *path)
			return nil
		case "migrate":
			return migrate(ctx, cfg, stdout, stderr)
		}
		return serve(ctx, cfg, environ, stderr, nil, *path)
	case "migrate-users":
		return migrateUsers(ctx, args, environ, stdout, stderr)
	case "dev":
		return runDev(ctx, args, environ, stdout, stderr)
	case "migration":
		return runMigration(ctx, args, environ, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "authgate: unknown command %q\n\n%s", cmd, usage)
		return exitError{2}
	}
}

// migrate applies the embedded migrations and exits.
func migrate(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	if !cfg.Federation.Enabled {
		fmt.Fprintln(stderr, "authgate migrate: federation.enabled is false; nothing to migrate")
		return exitError{2}
	}
	log, flush, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer flush()
	store, err := federation.Open(ctx, cfg.Federation, log, nil)
	if err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(stdout, "migrations applied to schema %q\n", cfg.Federation.Schema)
	return nil
}

func printProblems(w io.Writer, path string, err error) {
	errs := configerr.List(err)
	fmt.Fprintf(w, "%s: %d problem(s):\n", path, len(errs))
	for _, e := range errs {
		fmt.Fprintf(w, "  %v\n", e)
	}
}

// newLogger builds the logger and the function that flushes it for the
// last time; call that before exit.
func newLogger(cfg LogConfig, out io.Writer) (*zap.Logger, func(), error) {
	log, _, flush, err := newLeveledLogger(cfg, out)
	return log, flush, err
}

// newLeveledLogger is newLogger, with the level that a reload changes.
func newLeveledLogger(cfg LogConfig, out io.Writer) (*zap.Logger, zap.AtomicLevel, func(), error) {
	l, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, zap.AtomicLevel{}, nil, err
	}
	lvl := zap.NewAtomicLevelAt(l)
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	ec.EncodeDuration = zapcore.SecondsDurationEncoder
	enc := zapcore.NewJSONEncoder(ec)
	if cfg.Format == "console" {
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	}
	errOut := zapcore.Lock(zapcore.AddSync(out))
	if cfg.BufferBytes <= 0 {
		log := zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl), zap.ErrorOutput(errOut))
		return log, lvl, func() { _ = log.Sync() }, nil
	}
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(out), Size: cfg.BufferBytes, FlushInterval: cfg.FlushInterval}
	core := flushAbove{Core: zapcore.NewCore(enc, ws, lvl), level: zapcore.WarnLevel}
	return zap.New(core, zap.ErrorOutput(errOut)), lvl, func() { _ = ws.Stop() }, nil
}

// flushAbove writes lines at level and above through at once, so that a
// warning or an error is never held in the buffer.
type flushAbove struct {
	zapcore.Core
	level zapcore.Level
}

func (c flushAbove) With(fields []zapcore.Field) zapcore.Core {
	return flushAbove{Core: c.Core.With(fields), level: c.level}
}

func (c flushAbove) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c flushAbove) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	err := c.Core.Write(ent, fields)
	if ent.Level >= c.level {
		return errors.Join(err, c.Core.Sync())
	}
	return err
}

// emulatorEnv is the variable that points the Firebase Admin SDK at the
// Auth Emulator, which turns signature checks off.
const emulatorEnv = "FIREBASE_AUTH_EMULATOR_HOST"

// lookupEnv finds key in environ.
func lookupEnv(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// serve runs authgate until ctx is done, then shuts down gracefully. ready,
// when not nil, receives the bound HTTP addresses once every listener
// accepts (the ext_authz_grpc one is in the "listening" log line). path,
// when not "", is the file cfg was read from: SIGHUP and changes to it (or
// to a file it names) reload it.
func serve(ctx context.Context, cfg Config, environ []string, logOut io.Writer, ready func(public, admin net.Addr), path string) error {
	if host := lookupEnv(environ, emulatorEnv); host != "" && !(cfg.Verify.Firebase.Enabled && cfg.Verify.Firebase.Emulator) {
		return fmt.Errorf("%s is set (%q) but verify.firebase.emulator is not enabled: the Firebase SDK skips signature checks against the emulator, so authgate refuses to start; unset it, or enable emulator mode for development", emulatorEnv, host)
	}
	log, level, flush, err := newLeveledLogger(cfg.Log, logOut)
	if err != nil {
		return err
	}
	defer flush()
	for _, k := range cfg.ignored {
		log.Warn("configuration key ignored", zap.String("key", k.path), zap.String("where", k.where), zap.String("reason", k.why))
	}
	if cfg.Verify.Firebase.Enabled && cfg.Verify.Firebase.Emulator {
		log.Warn("FIREBASE AUTH EMULATOR MODE: unsigned Firebase tokens are accepted; never run this in production",
			zap.String("project_id", cfg.Verify.Firebase.ProjectID))
	}
	memFields := memoryLimitFields(environ, cfg.Cache.LocalMaxBytes, log)
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	bgCtx, stopBackground := context.WithCancel(context.Background())
	defer func() {
		stopBackground()
		a.close()
	}()
	if path != "" {
		rl, err := newReloader(path, environ, cfg, a, level, a.reg)
		if err != nil {
			return err
		}
		// Caught from here on: SIGHUP's default is to end the process.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		a.background = append(a.background, func(ctx context.Context) error { return rl.watch(ctx, hup) })
	}
	a.prefetch(ctx)
	a.startBackground(bgCtx)

	pubLn, err := net.Listen("tcp", cfg.Server.Public.Addr)
	if err != nil {
		return fmt.Errorf("public listener: %w", err)
	}
	admLn, err := net.Listen("tcp", cfg.Server.Admin.Addr)
	if err != nil {
		_ = pubLn.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	var grpcLn net.Listener // nil when ext_authz_grpc.addr is ""
	if a.extAuthz != nil {
		grpcLn, err = net.Listen("tcp", cfg.Proxy.ExtAuthzGRPC.Addr)
		if err != nil {
			_ = pubLn.Close()
			_ = admLn.Close()
			return fmt.Errorf("ext_authz_grpc listener: %w", err)
		}
	}
	errLog := zap.NewStdLog(log.Named("http"))
	pub := newServer(cfg.Server.Public, a.handler, errLog)
	adm := newServer(cfg.Server.Admin.ListenerConfig, a.admin, errLog)

	errc := make(chan error, 3)
	go func() { errc <- pub.Serve(pubLn) }()
	go func() { errc <- adm.Serve(admLn) }()
	fields := []zap.Field{
		zap.String("public_addr", pubLn.Addr().String()),
		zap.String("admin_addr", admLn.Addr().String()),
	}
	if grpcLn != nil {
		go func() { errc <- a.extAuthz.Serve(grpcLn) }()
		fields = append(fields, zap.String("ext_authz_grpc_addr", grpcLn.Addr().String()))
	}
	fields = append(fields, memFields...)
	log.Info("listening", append(fields, zap.String("version", version), zap.String("upstream", cfg.Proxy.Upstream))...)
	_ = log.Sync() // start-up lines are not held in the buffer
	if ready != nil {
		ready(pubLn.Addr(), admLn.Addr())
	}

	select {
	case err := <-errc:
		_ = pub.Close()
		_ = adm.Close()
		if a.extAuthz != nil {
			a.extAuthz.Close()
		}
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Drain: readiness (and the gRPC health service) fails first so load
	// balancers stop sending, then the listeners close and in-flight
	// requests and Checks get the grace period.
	a.admin.Drain()
	if a.extAuthz != nil {
		a.extAuthz.Drain()
	}
	log.Info("shutting down", zap.Duration("delay", cfg.Server.ShutdownDelay), zap.Duration("grace", cfg.Server.ShutdownGrace))
	_ = log.Sync()
	if cfg.Server.ShutdownDelay > 0 {
		time.Sleep(cfg.Server.ShutdownDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace)
	defer cancel()
	grpcDone := make(chan error, 1)
	go func() {
		if a.extAuthz == nil {
			grpcDone <- nil
			return
		}
		grpcDone <- a.extAuthz.Shutdown(sctx)
	}()
	if err := pub.Shutdown(sctx); err != nil {
		log.Warn("grace period over, closing remaining connections", zap.Error(err))
		_ = pub.Close()
	}
	if err := <-grpcDone; err != nil {
		log.Warn("grace period over, closed the remaining ext_authz_grpc Checks", zap.Error(err))
	}
	_ = adm.Shutdown(sctx)
	_ = adm.Close()
	log.Info("stopped")
	return nil
}

func newServer(l ListenerConfig, h http.Handler, errLog *stdlog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
}

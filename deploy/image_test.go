package deploy_test

// The container image cannot be built here (no Docker engine), so these
// tests check what can be checked without one: the Dockerfile's shape,
// that `make image` passes the build arguments the Dockerfile declares,
// and that the build context .dockerignore leaves holds every file the
// binary is built from.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// dockerfileStage is one FROM ... stage of a Dockerfile.
type dockerfileStage struct {
	from         string
	instructions [][2]string // instruction (upper case), rest of the line
}

// parseDockerfile splits a Dockerfile into stages of instructions, with
// continuation lines joined and comments dropped.
func parseDockerfile(t *testing.T, b []byte) []dockerfileStage {
	t.Helper()
	var stages []dockerfileStage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		instr, rest, _ := strings.Cut(line, " ")
		instr = strings.ToUpper(instr)
		if instr == "FROM" {
			stages = append(stages, dockerfileStage{from: strings.TrimSpace(rest)})
			return
		}
		if len(stages) == 0 {
			if instr != "ARG" {
				t.Fatalf("Dockerfile: %s before the first FROM", instr)
			}
			return
		}
		s := &stages[len(stages)-1]
		s.instructions = append(s.instructions, [2]string{instr, strings.TrimSpace(rest)})
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages
}

// TestDockerfile checks the image's design: a static binary built without
// cgo, on distroless static as the nonroot user, no HEALTHCHECK (the
// orchestrator probes /healthz and /readyz), and version stamping that
// agrees with the Makefile.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, b)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s), want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot$`).MatchString(final.from) {
		t.Errorf("runtime stage FROM %q, want gcr.io/distroless/static-debianNN:nonroot", final.from)
	}
	has := func(s dockerfileStage, instr string) []string {
		var out []string
		for _, in := range s.instructions {
			if in[0] == instr {
				out = append(out, in[1])
			}
		}
		return out
	}
	for _, s := range stages {
		if h := has(s, "HEALTHCHECK"); len(h) > 0 {
			t.Errorf("HEALTHCHECK %q: the image has no shell or client to run it, and Kubernetes probes the admin port", h)
		}
	}
	if u := has(final, "USER"); len(u) == 0 || !slices.Contains([]string{"nonroot", "65532", "65532:65532", "nonroot:nonroot"}, u[len(u)-1]) {
		t.Errorf("runtime stage USER %q, want nonroot (65532)", u)
	}
	if ep := has(final, "ENTRYPOINT"); len(ep) != 1 || ep[0] != `["/authgate"]` {
		t.Errorf("ENTRYPOINT %q, want [\"/authgate\"] in exec form", ep)
	}

	runs := strings.Join(has(build, "RUN"), "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-tags disable_grpc_modules", "./cmd/authgate"} {
		if !strings.Contains(runs, want) {
			t.Errorf("build stage RUN does not contain %q", want)
		}
	}
	args := map[string]bool{}
	for _, a := range has(build, "ARG") {
		name, _, _ := strings.Cut(a, "=")
		args[name] = true
	}

	// make image passes --build-arg NAME=...; each must be an ARG of the
	// build stage, or Docker warns and ignores it.
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	image := regexp.MustCompile(`(?m)^image:.*\n((?:\t.*\n)+)`).FindSubmatch(mk)
	if image == nil {
		t.Fatal("Makefile has no image target")
	}
	buildArgs := regexp.MustCompile(`--build-arg\s+(\w+)=`).FindAllSubmatch(image[1], -1)
	if len(buildArgs) == 0 {
		t.Errorf("make image passes no --build-arg")
	}
	for _, m := range buildArgs {
		if !args[string(m[1])] {
			t.Errorf("make image passes --build-arg %s, which the build stage does not declare (ARGs: %v)", m[1], args)
		}
	}
	// The linker flags stamp the same variables as make build does.
	xflags := regexp.MustCompile(`-X\s+(main\.\w+)=`)
	var mkX, dfX []string
	for _, m := range xflags.FindAllSubmatch(mk, -1) {
		mkX = append(mkX, string(m[1]))
	}
	for _, m := range xflags.FindAllStringSubmatch(runs, -1) {
		dfX = append(dfX, m[1])
	}
	slices.Sort(mkX)
	slices.Sort(dfX)
	if len(mkX) == 0 || !slices.Equal(slices.Compact(mkX), slices.Compact(dfX)) {
		t.Errorf("Makefile stamps %v, the Dockerfile %v; want the same", mkX, dfX)
	}
	for _, c := range has(final, "COPY") {
		if f := strings.Fields(c); len(f) == 2 && !strings.HasPrefix(f[0], "--") {
			if _, err := os.Stat(filepath.Join("..", f[0])); err != nil {
				t.Errorf("COPY %s: %v", c, err)
			}
		}
	}
}

// dockerignore is a .dockerignore file: patterns in order, the last that
// matches a path (or a directory above it) deciding, "!" re-including.
type dockerignore []struct {
	re      *regexp.Regexp
	exclude bool
}

func parseDockerignore(t *testing.T, b []byte) dockerignore {
	t.Helper()
	var d dockerignore
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		exclude := true
		if p, ok := strings.CutPrefix(line, "!"); ok {
			line, exclude = p, false
		}
		line = strings.Trim(filepath.ToSlash(filepath.Clean(line)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		d = append(d, struct {
			re      *regexp.Regexp
			exclude bool
		}{regexp.MustCompile(re.String()), exclude})
	}
	return d
}

// included reports whether the slash-separated path p (relative to the
// context) is sent to the builder.
func (d dockerignore) included(p string) bool {
	excluded := false
	for _, r := range d {
		parts := strings.Split(p, "/")
		for i := 1; i <= len(parts); i++ {
			if r.re.MatchString(strings.Join(parts[:i], "/")) {
				excluded = r.exclude
				break
			}
		}
	}
	return !excluded
}

// TestDockerBuildContext checks that .dockerignore sends every file the
// binary is built from (Go files and embedded files of every package of
// this module that cmd/authgate imports), and no test files.
func TestDockerBuildContext(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list; skipped with -short")
	}
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	di := parseDockerignore(t, b)
	for _, tt := range []struct {
		give string
		want bool
	}{
		{"go.mod", true}, {"cmd/authgate/main.go", true}, {"cmd/authgate/e2e_test.go", false},
		{".git/HEAD", false}, {".tools/bin/caddy", false}, {"deploy/deploy_test.go", false},
	} {
		if got := di.included(tt.give); got != tt.want {
			t.Errorf(".dockerignore includes %s = %v, want %v", tt.give, got, tt.want)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-json=Dir,Module,GoFiles,EmbedFiles,Standard", "../cmd/authgate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	files := 0
	for dec.More() {
		var p struct {
			Dir        string
			Module     *struct{ Main bool }
			GoFiles    []string
			EmbedFiles []string
			Standard   bool
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Standard || p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(p.GoFiles, p.EmbedFiles) {
			files++
			if p := filepath.ToSlash(filepath.Join(rel, f)); !di.included(p) {
				t.Errorf(".dockerignore leaves out %s, which the binary is built from: add its top-level directory", p)
			}
		}
	}
	if files == 0 {
		t.Fatal("go list found no file of this module")
	}
	for _, f := range []string{"go.mod", "go.sum", "configs/authgate.yaml"} {
		if !di.included(f) {
			t.Errorf(".dockerignore leaves out %s", f)
		}
	}
}

// TestBuildTagLeavesOutDirectPath checks that the build tag the Makefile,
// the Dockerfile and the load suite build with still keeps Cloud Storage's
// gRPC direct-path code (gRPC xDS and Envoy's control-plane protos, 16 MB
// of binary and about 5 MiB of memory at start) out of authgate: a
// dependency upgrade that moved it behind another tag would bring it back
// silently.
func TestBuildTagLeavesOutDirectPath(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	list := func(tags ...string) []string {
		args := append([]string{"list", "-deps"}, tags...)
		cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/authgate")...)
		cmd.Dir = ".."
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %s: %v", strings.Join(args, " "), err)
		}
		return strings.Fields(string(out))
	}
	const xds = "google.golang.org/grpc/xds"
	if !slices.Contains(list(), xds) {
		t.Skipf("%s is no longer linked even without the tag: the tag may be dropped", xds)
	}
	if slices.Contains(list("-tags", "disable_grpc_modules"), xds) {
		t.Errorf("%s is linked with -tags disable_grpc_modules", xds)
	}
}

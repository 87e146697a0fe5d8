package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// The suite's own servers run as separate processes (this program with a
// sub-command), so that /proc accounts their CPU time and memory apart from
// the load generator's.
const (
	cmdFloor    = "floor"    // bare net/http answering 200
	cmdUpstream = "upstream" // the trivial upstream behind both proxies
	cmdRevProxy = "revproxy" // bare httputil.ReverseProxy in front of -upstream
	cmdRS256    = "rs256"    // bare net/http verifying the bearer token's RS256 signature, then 200
)

var (
	okBody    = []byte("ok\n")
	textPlain = []string{"text/plain; charset=utf-8"}
)

// okHandler answers 200 "ok", as little as a Go handler can do.
func okHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header()["Content-Type"] = textPlain
	_, _ = w.Write(okBody)
}

// rs256Handler is the RS256 floor: it verifies the signature of the
// bearer token (a compact JWS) with key, RSASSA-PKCS1-v1_5 over the
// SHA-256 of the signing input as crypto/rsa does it, and answers 200 "ok",
// or 401 if the signature does not verify. It parses neither the JOSE
// header nor the claims: what it costs over the floor is the signature
// check alone.
func rs256Handler(key *rsa.PublicKey) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		dot := strings.LastIndexByte(tok, '.')
		if !ok || dot < 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		digest := sha256.Sum256([]byte(tok[:dot]))
		if err != nil || rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		okHandler(w, r)
	}
}

// readRSAKey reads the RSA public key of the PEM certificate at path.
func readRSAKey(path string) (*rsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: the key is %T, not RSA", path, c.PublicKey)
	}
	return key, nil
}

// runServer is the entry point of a server sub-command. It listens on a
// free loopback port, logs the address in the same JSON line authgate
// writes, and serves until SIGTERM or SIGINT.
func runServer(name string, args []string) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	upstream := fs.String("upstream", "", "revproxy: the upstream URL")
	cert := fs.String("cert", "", "rs256: PEM file of the certificate whose RSA key signs the tokens")
	withPprof := fs.Bool("pprof", false, "serve /debug/pprof/ on a second loopback listener (its address is the admin_addr of the listening line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var h http.Handler
	switch name {
	case cmdFloor, cmdUpstream:
		h = http.HandlerFunc(okHandler)
	case cmdRS256:
		key, err := readRSAKey(*cert)
		if err != nil {
			return fmt.Errorf("rs256: -cert: %w", err)
		}
		h = rs256Handler(key)
	case cmdRevProxy:
		target, err := url.Parse(*upstream)
		if err != nil || target.Host == "" {
			return fmt.Errorf("revproxy: -upstream %q is not a URL", *upstream)
		}
		// The transport matches authgate's defaults for the upstream.
		transport := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			IdleConnTimeout:     90 * time.Second,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
		}
		h = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Host = pr.In.Host
				pr.SetXForwarded()
			},
			Transport: transport,
			ErrorLog:  log.New(io.Discard, "", 0),
		}
	default:
		return fmt.Errorf("unknown server %q", name)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The same timeouts as authgate's public listener.
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	listening := map[string]string{"msg": "listening", "public_addr": ln.Addr().String()}
	if *withPprof {
		// Profiles of the floor, to set beside authgate's; the handler
		// under load is untouched.
		adm, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(adm) }()
		listening["admin_addr"] = adm.Addr().String()
	}
	line, _ := json.Marshal(listening)
	fmt.Printf("%s\n", line)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return srv.Close()
	}
}

// proc is a child process whose output goes to a file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	drained chan struct{} // closed when the output pipe is drained; nil without one
	err     error         // from Wait; read after done is closed
	public  string
	admin   string
}

// startProc starts cmd with its stdout and stderr going to logPath, and
// waits for the "listening" line. With viaPipe the output goes through a
// pipe that the suite drains into the file, as a container runtime drains
// a container's stdout: the server then pays a pipe write per log line,
// not a file-system append. (JSON logs to a pipe that nobody reads would
// block the server.)
func startProc(ctx context.Context, name string, cmd *exec.Cmd, logPath string, viaPipe bool) (*proc, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	var pw *os.File
	if viaPipe {
		var pr *os.File
		if pr, pw, err = os.Pipe(); err != nil {
			out.Close()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = pw, pw
		drained := make(chan struct{})
		go func() {
			_, _ = io.Copy(out, pr)
			pr.Close()
			out.Close()
			close(drained)
		}()
		p.drained = drained
	} else {
		cmd.Stdout, cmd.Stderr = out, out
	}
	// The kernel stops the servers if the suite dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	if pw != nil {
		pw.Close() // the child holds its own copy
	} else {
		out.Close()
	}
	if err != nil {
		if pw != nil {
			<-p.drained
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		if p.drained != nil {
			<-p.drained
		}
		close(p.done)
	}()
	p.public, p.admin, err = p.waitListening(ctx, 20*time.Second)
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// waitListening polls the log for the "listening" line.
func (p *proc) waitListening(ctx context.Context, timeout time.Duration) (public, admin string, err error) {
	deadline := time.Now().Add(timeout)
	for {
		if public, admin, ok := findListening(p.logPath); ok {
			return public, admin, nil
		}
		select {
		case <-p.done:
			return "", "", fmt.Errorf("%s exited before listening: %v\n%s", p.name, p.err, p.tail())
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("%s: no \"listening\" log line within %s\n%s", p.name, timeout, p.tail())
		}
	}
}

func findListening(path string) (public, admin string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if !bytes.Contains(b, []byte(`"listening"`)) {
			continue
		}
		var line struct {
			Msg    string `json:"msg"`
			Public string `json:"public_addr"`
			Admin  string `json:"admin_addr"`
		}
		if json.Unmarshal(b, &line) == nil && line.Msg == "listening" && line.Public != "" {
			return line.Public, line.Admin, true
		}
	}
	return "", "", false
}

// tail returns the end of the process's output, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// alive returns an error if the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.tail())
	default:
		return nil
	}
}

// stop sends SIGTERM and waits, then SIGKILL.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// getURL fetches url with a short timeout and returns the body, failing
// on any status but 200.
func getURL(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("get %s: status %d: %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, nil
}

var errNotReady = errors.New("not ready")

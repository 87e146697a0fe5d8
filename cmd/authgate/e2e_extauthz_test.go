package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/authgate/authgate/verify/verifytest"
)

// TestExtAuthzGRPCServe runs the built binary with ext_authz_grpc.addr set
// and drives its gRPC listener as Envoy would: Checks are decided, counted
// and logged; the health service serves until SIGTERM, then reports
// NOT_SERVING through shutdown_delay, and the process exits 0.
func TestExtAuthzGRPCServe(t *testing.T) {
	ag := startAuthgate(t, fmt.Sprintf(`
server:
  public:
    addr: "127.0.0.1:0"
  admin:
    addr: "127.0.0.1:0"
  shutdown_delay: 1s
  shutdown_grace: 5s
upstream: ""
trusted_proxies: ["127.0.0.1/32"]
ext_authz_grpc:
  addr: "127.0.0.1:0"
routes:
  - name: public
    path: /public/
    access: public
  - name: default
    path: /
verify:
  legacy:
    enabled: true
    issuer: https://auth.example.test
    secret_files: [%q]
`, writeTestSecret(t)))
	if ag.extAuthz == "" {
		t.Fatalf("the listening line has no ext_authz_grpc_addr:\n%s", ag.out)
	}
	conn, err := grpc.NewClient(ag.extAuthz, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	tok := verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), verifytest.Claims("u-1", time.Now()), nil)
	check := func(path string, headers map[string]string) *authv3.CheckResponse {
		t.Helper()
		resp, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "svc", Path: path, Headers: headers,
			}},
		}})
		if err != nil {
			t.Fatalf("Check %s: %v", path, err)
		}
		return resp
	}

	resp := check("/x", map[string]string{"authorization": "Bearer " + tok, "x-user-id": spoofedValue, "x_user_type": spoofedValue})
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("valid token: %v, want an OK response", resp)
	}
	set := map[string]string{}
	for _, h := range ok.GetHeaders() {
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if set["x-user-id"] != "u-1" || len(set) != 9 {
		t.Errorf("OK response sets %v, want the 9 identity headers with x-user-id u-1", set)
	}
	if rm := strings.Join(ok.GetHeadersToRemove(), ","); !strings.Contains(rm, "x_user_type") {
		t.Errorf("headers_to_remove = %s, want x_user_type in it", rm)
	}
	if got := check("/x", nil).GetDeniedResponse().GetStatus().GetCode(); got != 401 {
		t.Errorf("no token: status %d, want 401", got)
	}
	if check("/public/a", nil).GetOkResponse() == nil {
		t.Error("public route without a token: not allowed")
	}

	httpc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	mresp, err := httpc.Get("http://" + ag.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	_ = mresp.Body.Close()
	for _, want := range []string{
		`authgate_requests_total{code="2xx",mode="ext_authz_grpc",route="default"} 1`,
		`authgate_requests_total{code="4xx",mode="ext_authz_grpc",route="default"} 1`,
		`authgate_requests_total{code="2xx",mode="ext_authz_grpc",route="public"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	hc := healthpb.NewHealthClient(conn)
	hresp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || hresp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before SIGTERM: %v, %v; want SERVING", hresp.GetStatus(), err)
	}
	if err := ag.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Through shutdown_delay the listener still answers, NOT_SERVING.
	pollUntil(t, 900*time.Millisecond, "health NOT_SERVING after SIGTERM", func() bool {
		hresp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && hresp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	select {
	case <-ag.done:
	case <-time.After(10 * time.Second):
		t.Fatal("authgate did not exit within 10s of SIGTERM")
	}
	if ag.err != nil {
		t.Errorf("authgate exited with %v, want exit status 0", ag.err)
	}
	// Access lines are buffered (log.buffer_bytes) until exit.
	out := ag.out.String()
	if !strings.Contains(out, `"msg":"stopped"`) {
		t.Errorf("log has no \"stopped\" line:\n%s", out)
	}
	if strings.Count(out, `"mode":"ext_authz_grpc"`) != 3 || strings.Contains(out, tok) {
		t.Errorf("access log: want 3 ext_authz_grpc lines without the token:\n%s", out)
	}
}

package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/verify"
)

func TestTokenAPI(t *testing.T) {
	h := newHandler(t, testConfig(""), WithReadiness(func(context.Context) Readiness {
		return Readiness{Status: "degraded", Checks: map[string]CheckState{
			"redis":    {Status: "degraded", Error: "dial tcp 10.1.2.3:6379: connect: connection refused"},
			"postgres": {Status: "ok"},
		}}
	}))
	tok := token(t, "u-9", func(c map[string]any) { c["user_type"] = "admin" })
	tests := []struct {
		name       string
		giveMethod string
		givePath   string
		giveBody   string
		giveAuth   string
		wantStatus int
		wantValid  bool
		wantCode   string
		wantUser   string
	}{
		{name: "verify ok", giveMethod: "POST", givePath: "/v1/token/verify", giveBody: `{"token":"` + tok + `"}`, wantStatus: 200, wantValid: true, wantUser: "u-9"},
		{name: "verify forged", giveMethod: "POST", givePath: "/v1/token/verify", giveBody: `{"token":"` + forgedToken(t, "u-9") + `"}`, wantStatus: 401, wantCode: "invalid_token"},
		{name: "verify empty token", giveMethod: "POST", givePath: "/v1/token/verify", giveBody: `{"token":""}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "verify not json", giveMethod: "POST", givePath: "/v1/token/verify", giveBody: `token=abc`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "verify deeply nested json", giveMethod: "POST", givePath: "/v1/token/verify", giveBody: strings.Repeat("[", 10000), wantStatus: 400, wantCode: "invalid_request"},
		{name: "verify body too large", giveMethod: "POST", givePath: "/v1/token/verify", giveBody: `{"token":"` + strings.Repeat("a", maxTokenAPIBody) + `"}`, wantStatus: 413, wantCode: "request_too_large"},
		{name: "verify wrong method", giveMethod: "GET", givePath: "/v1/token/verify", wantStatus: 405},
		{name: "verify-header ok", giveMethod: "POST", givePath: "/v1/token/verify-header", giveAuth: "Bearer " + tok, wantStatus: 200, wantValid: true, wantUser: "u-9"},
		{name: "verify-header missing", giveMethod: "POST", givePath: "/v1/token/verify-header", wantStatus: 401, wantCode: "missing_token"},
		{name: "verify-header invalid", giveMethod: "POST", givePath: "/v1/token/verify-header", giveAuth: "Bearer x.y.z", wantStatus: 401, wantCode: "invalid_token"},
		{name: "unknown endpoint", giveMethod: "GET", givePath: "/v1/token/other", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.giveMethod, "http://svc"+tt.givePath, strings.NewReader(tt.giveBody))
			if tt.giveAuth != "" {
				r.Header.Set("Authorization", tt.giveAuth)
			}
			w := serve(h, r, "203.0.113.9:1")
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", w.Code, tt.wantStatus, w.Body.String())
			}
			if tt.wantStatus == 405 || tt.wantStatus == 404 {
				return
			}
			var got struct {
				Valid bool `json:"valid"`
				User  *struct {
					ID       string `json:"id"`
					UserType string `json:"userType"`
					Provider string `json:"provider"`
				} `json:"user"`
				Error *struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", w.Body.String(), err)
			}
			if got.Valid != tt.wantValid {
				t.Errorf("valid = %v, want %v", got.Valid, tt.wantValid)
			}
			if tt.wantUser != "" {
				if got.User == nil || got.User.ID != tt.wantUser || got.User.UserType != "admin" || got.User.Provider != "legacy" {
					t.Errorf("user = %+v, want id %q, admin, legacy", got.User, tt.wantUser)
				}
			}
			if tt.wantCode != "" {
				if got.Error == nil || got.Error.Code != tt.wantCode {
					t.Fatalf("error = %+v, want code %q", got.Error, tt.wantCode)
				}
				if strings.Contains(got.Error.Message, "signature") || strings.Contains(got.Error.Message, "secret") {
					t.Errorf("error message leaks the cause: %q", got.Error.Message)
				}
			}
		})
	}
}

func TestTokenAPIHealth(t *testing.T) {
	h := newHandler(t, testConfig(""), WithReadiness(func(context.Context) Readiness {
		return Readiness{Status: "degraded", Checks: map[string]CheckState{
			"redis":    {Status: "degraded", Error: "dial tcp 10.1.2.3:6379: connect: connection refused"},
			"postgres": {Status: "ok"},
		}}
	}))
	w := serve(h, httptest.NewRequest("GET", "http://svc/v1/token/health", nil), "")
	if w.Code != 200 {
		t.Fatalf("status = %d, want 200", w.Code)
	}
	var got Readiness
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != "degraded" || got.Checks["redis"].Status != "degraded" || got.Checks["postgres"].Status != "ok" {
		t.Errorf("health = %+v, want degraded with redis degraded and postgres ok", got)
	}
	// The public answer is a status per dependency: the cause stays on
	// the admin listener.
	if strings.Contains(w.Body.String(), "10.1.2.3") || strings.Contains(w.Body.String(), "error") {
		t.Errorf("health body %s carries a check's error, want statuses only", w.Body)
	}
}

// The token API answers federation's refusals with 403 user_refused, and
// an unreachable user table (on_unavailable deny) with 503 unavailable.
func TestTokenAPIUserRefused(t *testing.T) {
	tok := token(t, "u-9", nil)
	tests := []struct {
		name       string
		giveErr    error
		wantStatus int
		wantCode   string
	}{
		{name: "disabled row", giveErr: federation.ErrUserDisabled, wantStatus: 403, wantCode: "user_refused"},
		{name: "legacy user without a row", giveErr: federation.ErrUnknownUser, wantStatus: 403, wantCode: "user_refused"},
		{name: "link refused", giveErr: federation.ErrLinkRefused, wantStatus: 403, wantCode: "user_refused"},
		{name: "user table down", giveErr: federation.ErrUnavailable, wantStatus: 503, wantCode: "unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandler(t, testConfig(""), WithUsers(fakeUsers(func(verify.Identity) (federation.User, error) {
				return federation.User{}, fmt.Errorf("ensure user: %w", tt.giveErr)
			})))
			r := httptest.NewRequest("POST", "http://svc/v1/token/verify", strings.NewReader(`{"token":"`+tok+`"}`))
			w := serve(h, r, "203.0.113.9:1")
			var got tokenAPIResponse
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.wantStatus || got.Valid || got.Error == nil || got.Error.Code != tt.wantCode {
				t.Errorf("verify = %d %s, want %d %s", w.Code, w.Body, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

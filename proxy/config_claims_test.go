package proxy

import (
	"github.com/authgate/authgate/internal/configtest"
	"reflect"
	"testing"
)

func TestClaimNames(t *testing.T) {
	cfg := testConfig("")
	cfg.Routes = append(cfg.Routes,
		RouteConfig{Name: "beta2", Path: "/beta2", Require: Requirements{Claims: map[string][]string{"plan": {"pro"}, "org": {"acme"}}}},
	)
	if got, want := cfg.ClaimNames(), []string{"org", "plan"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ClaimNames() = %v, want %v", got, want)
	}
	if got := (configtest.Fill(Config{}, DefaultConfig())).ClaimNames(); got != nil {
		t.Errorf("ClaimNames() without routes = %v, want nil", got)
	}
}

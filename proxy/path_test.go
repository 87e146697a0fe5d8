package proxy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		give    string
		want    string
		wantErr bool
	}{
		{give: "/", want: "/"},
		{give: "/a/b", want: "/a/b"},
		{give: "/a/b/", want: "/a/b/"},
		{give: "//a///b", want: "/a/b"},
		{give: "/a/./b", want: "/a/b"},
		{give: "/a/../b", want: "/b"},
		{give: "/../../a", want: "/a"},
		{give: "/a/..", want: "/"},
		{give: "/a/b/..", want: "/a/"},
		{give: "/a/.", want: "/a/"},
		{give: "/%2e%2e/a", want: "/a"},
		{give: "/a/%2E%2e/b", want: "/b"},
		{give: "/a/%2e/b", want: "/a/b"},
		{give: "/.hidden", want: "/.hidden"},
		{give: "/a..b", want: "/a..b"},
		{give: "/caf%C3%A9", want: "/café"},
		{give: "/a%20b", want: "/a b"},
		{give: "/a;v=1/b", want: "/a;v=1/b"},
		{give: "/a%3Fb", want: "/a?b"},
		{give: "/a%23b", want: "/a#b"},
		{give: "/a%2fb", wantErr: true},
		{give: "/%c0%ae%c0%ae/admin", wantErr: true}, // overlong '.', read as "../" by old decoders
		{give: "/a%ff", wantErr: true},
		{give: "/a\xffb", wantErr: true},
		{give: "/caf\xc3\xa9", want: "/café"},
		{give: "/a%2Fb", wantErr: true},
		{give: "/a%5cb", wantErr: true},
		{give: "/a\\b", wantErr: true},
		{give: "/a%00", wantErr: true},
		{give: "/a%0a", wantErr: true},
		{give: "/a%", wantErr: true},
		{give: "/a%2", wantErr: true},
		{give: "/a%zz", wantErr: true},
		{give: "/a%252e", wantErr: true},
		{give: "/a%25", want: "/a%"},
		{give: "/a/..;/b", wantErr: true},
		{give: "/a/.;x/b", wantErr: true},
		{give: "/;/b", wantErr: true},
		{give: "", wantErr: true},
		{give: "*", wantErr: true},
		{give: "a/b", wantErr: true},
	}
	for _, tt := range tests {
		got, err := canonicalPath(tt.give)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("canonicalPath(%q) = %q, %v; want %q, error %v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

// FuzzCanonicalPath: never panics; the result is canonical (a fixed point)
// and holds no segment a backend would resolve.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/", "//x", "/a%2fb", "/a/..;/b", "/caf%C3%A9", "/a%252e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := canonicalPath(in)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("canonicalPath(%q) = %q, not absolute", in, got)
		}
		for _, seg := range strings.Split(got[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("canonicalPath(%q) = %q keeps a dot segment", in, got)
			}
		}
		if !utf8.ValidString(got) {
			t.Fatalf("canonicalPath(%q) = %q is not valid UTF-8", in, got)
		}
		if strings.Contains(got, "//") || strings.ContainsAny(got, "\\\x00") {
			t.Fatalf("canonicalPath(%q) = %q is not clean", in, got)
		}
	})
}

func TestRouteMatch(t *testing.T) {
	tests := []struct {
		name       string
		giveRoute  RouteConfig
		giveHost   string
		giveMethod string
		givePath   string
		want       bool
	}{
		{name: "prefix exact", giveRoute: RouteConfig{Path: "/api"}, givePath: "/api", want: true},
		{name: "prefix child", giveRoute: RouteConfig{Path: "/api"}, givePath: "/api/v1", want: true},
		{name: "prefix sibling", giveRoute: RouteConfig{Path: "/api"}, givePath: "/apix", want: false},
		{name: "prefix with slash", giveRoute: RouteConfig{Path: "/api/"}, givePath: "/api", want: false},
		{name: "root", giveRoute: RouteConfig{Path: "/"}, givePath: "/anything", want: true},
		{name: "glob star", giveRoute: RouteConfig{Path: "/u/*/profile"}, givePath: "/u/42/profile", want: true},
		{name: "glob star stays in segment", giveRoute: RouteConfig{Path: "/u/*/profile"}, givePath: "/u/4/2/profile", want: false},
		{name: "glob double star", giveRoute: RouteConfig{Path: "/static/**"}, givePath: "/static/a/b/c.css", want: true},
		{name: "glob double star empty", giveRoute: RouteConfig{Path: "/static/**"}, givePath: "/static", want: true},
		{name: "glob suffix", giveRoute: RouteConfig{Path: "/**/*.png"}, givePath: "/a/b/x.png", want: true},
		{name: "glob suffix at root", giveRoute: RouteConfig{Path: "/**/*.png"}, givePath: "/x.png", want: true},
		{name: "glob suffix mismatch", giveRoute: RouteConfig{Path: "/**/*.png"}, givePath: "/a/x.png/b", want: false},
		{name: "glob double star in the middle", giveRoute: RouteConfig{Path: "/a/**/z"}, givePath: "/a/b/c/z", want: true},
		{name: "glob double star in the middle, none", giveRoute: RouteConfig{Path: "/a/**/z"}, givePath: "/a/z", want: true},
		{name: "glob double star in the middle, no tail", giveRoute: RouteConfig{Path: "/a/**/z"}, givePath: "/a/b", want: false},
		{name: "glob longer path", giveRoute: RouteConfig{Path: "/u/*"}, givePath: "/u/1/2", want: false},
		{name: "glob shorter path", giveRoute: RouteConfig{Path: "/u/*/x"}, givePath: "/u/1", want: false},
		{name: "host exact any case with port", giveRoute: RouteConfig{Host: "API.example.test", Path: "/"}, giveHost: "api.Example.test:8443", givePath: "/", want: true},
		{name: "host wildcard", giveRoute: RouteConfig{Host: "*.example.test", Path: "/"}, giveHost: "a.b.example.test", givePath: "/", want: true},
		{name: "host wildcard excludes apex", giveRoute: RouteConfig{Host: "*.example.test", Path: "/"}, giveHost: "example.test", givePath: "/", want: false},
		{name: "host wildcard is a suffix on a dot", giveRoute: RouteConfig{Host: "*.example.test", Path: "/"}, giveHost: "evilexample.test", givePath: "/", want: false},
		{name: "method listed", giveRoute: RouteConfig{Path: "/", Methods: []string{"GET", "HEAD"}}, giveMethod: "HEAD", givePath: "/", want: true},
		{name: "method not listed", giveRoute: RouteConfig{Path: "/", Methods: []string{"GET"}}, giveMethod: "DELETE", givePath: "/", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.giveRoute.Name = "r"
			if err := validateRoutes([]RouteConfig{tt.giveRoute}); err != nil {
				t.Fatalf("route invalid: %v", err)
			}
			rt := compileRoutes([]RouteConfig{tt.giveRoute})[0]
			method := tt.giveMethod
			if method == "" {
				method = "GET"
			}
			if got := rt.match(tt.giveHost, method, tt.givePath, false); got != tt.want {
				t.Errorf("match(%q, %q, %q) = %v, want %v", tt.giveHost, method, tt.givePath, got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Upstream = "ftp://x"
	cfg.HeaderPrefix = "X User"
	cfg.TrustedProxies = []string{"10.0.0.0/8", "not-an-ip"}
	cfg.ForwardAuth.Path = "/auth/"
	cfg.Transport.DialTimeout = 0
	cfg.Routes = []RouteConfig{
		{Name: "a", Path: "api"},
		{Name: "a", Path: "/x/../y"},
		{Name: "", Path: "/p", Access: "public", Require: Requirements{EmailVerified: true}},
		{Name: "m", Path: "/", Access: "sometimes", Methods: []string{"get"}, Host: "a:80"},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	for _, want := range []string{
		"upstream:", "header_prefix:", "trusted_proxies[1]:", "forward_auth.path:", "transport.dial_timeout:",
		"routes[0].path:", "routes[1].name:", "routes[1].path:", "routes[2].name:", "routes[2].require:",
		"routes[3].access:", "routes[3].methods[0]:", "routes[3].host:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, missing %q", err, want)
		}
	}
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "routes:") {
		t.Errorf("default config without routes: Validate() = %v, want a routes error", err)
	}
}

func TestStripPort(t *testing.T) {
	tests := []struct{ give, want string }{
		{"svc", "svc"}, {"svc:8080", "svc"}, {"[::1]:8080", "::1"}, {"[::1]", "::1"}, {"::1", "::1"}, {"10.0.0.1:80", "10.0.0.1"},
	}
	for _, tt := range tests {
		if got := stripPort(tt.give); got != tt.want {
			t.Errorf("stripPort(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// dotOrEmptyOracle is hasDotOrEmptySegment as first written, splitting the
// path: the reference for the version that walks it in place.
func dotOrEmptyOracle(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if s == "" && i == len(segs)-1 {
			continue
		}
		switch strings.ToLower(s) {
		case "", ".", "..", "%2e", "%2e%2e", ".%2e", "%2e.":
			return true
		}
	}
	return false
}

func TestHasDotOrEmptySegment(t *testing.T) {
	for _, tt := range []struct {
		give string
		want bool
	}{
		{"/", false}, {"/a", false}, {"/a/", false}, {"/a/b/c", false}, {"/a..b/c.d", false}, {"/%2e%2ex", false},
		{"a/../b", false}, // not a path canonicalPath accepts: refused there
		{"//", true}, {"/a//b", true}, {"/a/./b", true}, {"/a/..", true}, {"/..", true}, {"/a/../", true},
		{"/a/%2e/b", true}, {"/a/%2E%2e/b", true}, {"/a/.%2E", true}, {"/%2e./x", true}, {"/a//", true},
	} {
		if got := hasDotOrEmptySegment(tt.give); got != tt.want {
			t.Errorf("hasDotOrEmptySegment(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

// FuzzHasDotOrEmptySegment: the in-place walk agrees with the split.
func FuzzHasDotOrEmptySegment(f *testing.F) {
	for _, s := range []string{"/", "/a//b", "/a/%2E./", "/a/b/", "//", "/.%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if got, want := hasDotOrEmptySegment(p), dotOrEmptyOracle(p); got != want {
			t.Errorf("hasDotOrEmptySegment(%q) = %v, the split gives %v", p, got, want)
		}
	})
}

package main

import "testing"

func TestSameListenAddr(t *testing.T) {
	tests := []struct {
		giveA, giveB string
		want         bool
	}{
		{"127.0.0.1:0", "127.0.0.1:0", false}, // each gets its own free port
		{":0", ":0", false},
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{":8080", "127.0.0.1:8080", true},
		{"0.0.0.0:8080", "[::1]:8080", true},
		{"127.0.0.1:8080", "127.0.0.2:8080", false},
		{"127.0.0.1:8080", "127.0.0.1:9090", false},
		{"not-an-addr", "not-an-addr", true},
	}
	for _, tt := range tests {
		if got := sameListenAddr(tt.giveA, tt.giveB); got != tt.want {
			t.Errorf("sameListenAddr(%q, %q) = %v, want %v", tt.giveA, tt.giveB, got, tt.want)
		}
	}
}

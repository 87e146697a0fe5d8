package breaker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/breaker"
)

func TestBreaker(t *testing.T) {
	b := breaker.New(time.Second, 4*time.Second)
	t0 := time.Unix(1000, 0)
	errDown := errors.New("down")
	steps := []struct {
		name      string
		at        time.Duration
		do        string // allow, fail, succeed
		wantAllow bool
		wantOpen  bool
	}{
		{name: "healthy", at: 0, do: "allow", wantAllow: true},
		{name: "first failure", at: 0, do: "fail", wantOpen: true},
		{name: "in back-off", at: 500 * time.Millisecond, do: "allow", wantOpen: true},
		{name: "probe", at: time.Second, do: "allow", wantAllow: true, wantOpen: true},
		{name: "one probe at a time", at: time.Second, do: "allow", wantOpen: true},
		{name: "probe fails: 2s", at: time.Second, do: "fail", wantOpen: true},
		{name: "still in back-off", at: 2900 * time.Millisecond, do: "allow", wantOpen: true},
		{name: "second probe", at: 3 * time.Second, do: "allow", wantAllow: true, wantOpen: true},
		{name: "probe fails: 4s", at: 3 * time.Second, do: "fail", wantOpen: true},
		{name: "third probe", at: 7 * time.Second, do: "allow", wantAllow: true, wantOpen: true},
		{name: "probe fails: capped", at: 7 * time.Second, do: "fail", wantOpen: true},
		{name: "capped at 4s", at: 11 * time.Second, do: "allow", wantAllow: true, wantOpen: true},
		{name: "probe succeeds", at: 11 * time.Second, do: "succeed"},
		{name: "healthy again", at: 11 * time.Second, do: "allow", wantAllow: true},
	}
	for _, st := range steps {
		now := t0.Add(st.at)
		allowed := false
		switch st.do {
		case "allow":
			allowed = b.Allow(now)
		case "fail":
			b.Fail(now, errDown)
		case "succeed":
			b.Succeed()
		}
		if allowed != st.wantAllow || b.Open() != st.wantOpen {
			t.Errorf("%s: allow = %t, open = %t, want %t, %t", st.name, allowed, b.Open(), st.wantAllow, st.wantOpen)
		}
	}
}

func TestBreakerLastErrAndRelease(t *testing.T) {
	b := breaker.New(time.Second, time.Minute)
	t0 := time.Unix(1000, 0)
	boom := errors.New("boom")
	if d, changed := b.Fail(t0, boom); d != time.Second || !changed {
		t.Fatalf("Fail = %s, %t; want 1s, true", d, changed)
	}
	if !errors.Is(b.LastErr(), boom) || b.Backoff() != time.Second {
		t.Errorf("LastErr, Backoff = %v, %s; want boom, 1s", b.LastErr(), b.Backoff())
	}
	if !b.Allow(t0.Add(time.Second)) {
		t.Fatal("no probe after the back-off")
	}
	b.Release() // the probe's caller went away: another may probe
	if !b.Allow(t0.Add(time.Second)) {
		t.Error("released probe did not let the next caller probe")
	}
	if d, changed := b.Fail(t0.Add(time.Second), boom); d != 2*time.Second || changed {
		t.Errorf("failed probe: Fail = %s, %t; want 2s, false", d, changed)
	}
	if !b.Succeed() || b.LastErr() != nil || b.Open() {
		t.Error("Succeed did not close the breaker")
	}
}

func TestBreakerZeroBackoffNeverOpens(t *testing.T) {
	b := breaker.New(0, 0)
	now := time.Unix(1000, 0)
	if d, opened := b.Fail(now, errors.New("down")); d != 0 || opened {
		t.Errorf("Fail = %v, %t, want 0, false", d, opened)
	}
	if !b.Allow(now) || b.Open() {
		t.Errorf("after a failure with back-off 0: Allow = %t, Open = %t, want true, false", b.Allow(now), b.Open())
	}
}

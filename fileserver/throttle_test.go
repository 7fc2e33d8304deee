package fileserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testPolicy() throttlePolicy {
	return userPolicy(Config{LoginBackoff: time.Second, LoginLockAfter: 10, LoginLock: 15 * time.Minute})
}

func TestUserPolicyDefaultsAndBounds(t *testing.T) {
	p := userPolicy(Config{})
	want := throttlePolicy{free: LoginFree, backoff: DefaultLoginBackoff, maxWait: loginMaxWait, lockAfter: DefaultLoginLockAfter, lock: DefaultLoginLock}
	if p != want {
		t.Errorf("defaults: %+v, want %+v", p, want)
	}
	p = userPolicy(Config{LoginBackoff: time.Second, LoginLockAfter: 2, LoginLock: 3 * time.Second})
	if p.free != 2 || p.maxWait != 3*time.Second {
		t.Errorf("a short lock: %+v; want free capped at lockAfter, maxWait at the lock", p)
	}
	if p := userPolicy(Config{LoginLock: 48 * time.Hour}); p.lock != loginsKeep {
		t.Errorf("lock %v, want it capped at %v (the bucket's age limit)", p.lock, loginsKeep)
	}
	h := hostPolicy(testPolicy())
	if h.free != hostFactor*LoginFree || h.lockAfter != hostFactor*10 || h.lock != 15*time.Minute {
		t.Errorf("host policy %+v", h)
	}
}

// TestBackoffGrowsThenLocks walks the waits after each failure: none for
// the free ones, 1s 2s 4s ... capped at a minute, then the lock.
func TestBackoffGrowsThenLocks(t *testing.T) {
	p := testPolicy()
	want := []time.Duration{0, 0, 0, 1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 32 * time.Second, time.Minute, 15 * time.Minute, 15 * time.Minute}
	for n, w := range want {
		f := failures{Count: n, Last: t0}
		if got := p.wait(f, t0); got != w {
			t.Errorf("after %d failures: wait %v, want %v", n, got, w)
		}
		if got := p.locked(f, t0); got != (n >= 10) {
			t.Errorf("after %d failures: locked = %v", n, got)
		}
	}
	// The wait counts from the last failure.
	f := failures{Count: 5, Last: t0}
	if got := p.wait(f, t0.Add(3*time.Second)); got != time.Second {
		t.Errorf("3s into a 4s back-off: wait %v, want 1s", got)
	}
	if got := p.wait(f, t0.Add(4*time.Second)); got != 0 {
		t.Errorf("back-off over: wait %v", got)
	}
	if got := p.wait(failures{Count: 10, Last: t0}, t0.Add(15*time.Minute-time.Second)); got != time.Second {
		t.Errorf("a second before the lock ends: wait %v", got)
	}
}

func TestBackoffCapNeverOverflows(t *testing.T) {
	p := throttlePolicy{free: 1, backoff: time.Hour, maxWait: 2 * time.Hour, lockAfter: 1 << 30, lock: 24 * time.Hour}
	if got := p.backoffAfter(1 << 20); got != 2*time.Hour {
		t.Errorf("after a million failures: %v", got)
	}
}

func TestFailuresAreForgottenAfterTheLock(t *testing.T) {
	p := testPolicy()
	f := failures{}
	for range 10 {
		f = p.failed(f, t0)
	}
	if f.Count != 10 || !p.locked(f, t0) {
		t.Fatalf("ten failures: %+v", f)
	}
	end := t0.Add(15 * time.Minute)
	if p.wait(f, end) != 0 || p.locked(f, end) || p.current(f, end).Count != 0 {
		t.Errorf("the lock has run out but still counts: %+v", p.current(f, end))
	}
	if g := p.failed(f, end); g.Count != 1 || !g.Last.Equal(end) {
		t.Errorf("a failure after the lock: %+v, want a fresh count of 1", g)
	}
	// Within the window the count goes on, timed from the latest failure.
	if g := p.failed(failures{Count: 4, Last: t0}, t0.Add(time.Minute)); g.Count != 5 || !g.Last.Equal(t0.Add(time.Minute)) {
		t.Errorf("a failure within the window: %+v", g)
	}
}

func TestThrottledErrorSaysWhenToTryAgain(t *testing.T) {
	for wait, want := range map[time.Duration]string{
		time.Millisecond:               "try again in 1s",
		1500 * time.Millisecond:        "try again in 2s",
		15 * time.Minute:               "try again in 15m0s",
		15*time.Minute - time.Second/2: "try again in 15m0s",
	} {
		err := errThrottled(wait)
		if subjects.CodeOf(err) != subjects.CodeThrottled || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("wait %v: %v (%s), want CodeThrottled and %q", wait, err, subjects.CodeOf(err), want)
		}
	}
	if subjects.CodeThrottled.Retryable() {
		t.Error("a throttled login must not be sent again by itself")
	}
}

func TestLocalFailuresCountAndReset(t *testing.T) {
	l := newLocalFailures(testPolicy(), 8)
	for range 3 {
		l.failed("alice", t0)
	}
	if got := l.wait("alice", t0); got != time.Second {
		t.Errorf("wait %v after 3 failures", got)
	}
	if got := l.wait("bob", t0); got != 0 {
		t.Errorf("bob waits %v for alice's failures", got)
	}
	l.reset("alice")
	if got := l.wait("alice", t0); got != 0 {
		t.Errorf("wait %v after a reset", got)
	}
	// The shared record replaces the local one; a record that no longer
	// counts takes no room.
	l.set("carol", failures{Count: 10, Last: t0}, t0)
	if !l.policy.locked(l.get("carol"), t0) {
		t.Error("set did not take the shared record")
	}
	l.set("carol", failures{}, t0)
	l.set("dave", failures{Count: 4, Last: t0.Add(-time.Hour)}, t0)
	if len(l.entries) != 0 {
		t.Errorf("entries %v, want none", l.entries)
	}
}

// TestLocalFailuresStayBounded floods the map with new keys: it keeps at
// most its bound, dropping records that no longer count first, then the
// oldest, and keeps the newest.
func TestLocalFailuresStayBounded(t *testing.T) {
	l := newLocalFailures(testPolicy(), 4)
	l.failed("stale", t0.Add(-time.Hour)) // forgotten by t0
	l.failed("old", t0)
	l.failed("mid", t0.Add(time.Second))
	l.failed("new", t0.Add(2*time.Second))
	l.failed("newer", t0.Add(3*time.Second))
	if _, ok := l.entries["stale"]; ok || len(l.entries) != 4 {
		t.Fatalf("entries %v: the stale one should have made room", l.entries)
	}
	l.failed("newest", t0.Add(4*time.Second))
	if _, ok := l.entries["old"]; ok || len(l.entries) != 4 {
		t.Fatalf("entries %v: the oldest should have made room", l.entries)
	}
	for i := range 1000 {
		now := t0.Add(time.Duration(5+i) * time.Second)
		l.failed(fmt.Sprint("flood", i), now)
		if len(l.entries) > 4 {
			t.Fatalf("%d entries", len(l.entries))
		}
	}
	if _, ok := l.entries["flood999"]; !ok {
		t.Error("the newest record was dropped")
	}
}

func TestFailureKeyIsAValidKeyForAnyName(t *testing.T) {
	valid := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := map[string]bool{}
	for _, name := range []string{"alice", "Alice", "", "a b.c*>", strings.Repeat("x", 10000), "ünïcode", "my password!"} {
		k := failureKey(name)
		if !valid.MatchString(k) {
			t.Errorf("key of %q: %q", name, k)
		}
		if seen[k] {
			t.Errorf("key of %q repeats", name)
		}
		seen[k] = true
		if strings.Contains(k, name) && name != "" {
			t.Errorf("key of %q contains the name", name)
		}
	}
}

func TestAuditLinesAreMarkedAndCarryNoSecrets(t *testing.T) {
	var buf bytes.Buffer
	s := &Server{log: slog.New(slog.NewJSONHandler(&buf, nil))}
	s.audit("login failed", "user", "alice", "via", "login", "password", "hunter22", "token", "tok-123",
		slog.String("session_key", "abc"), slog.String("Hash", "h"), "audit", false, "by", "admin")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	if line["msg"] != "login failed" || line["level"] != "INFO" || line["audit"] != true || line["user"] != "alice" || line["by"] != "admin" {
		t.Errorf("audit line %v", line)
	}
	for _, secret := range []string{"hunter22", "tok-123", "abc", `"h"`, "password", "token", "session"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("audit line holds %q: %s", secret, buf.String())
		}
	}
	a := loginAttempt{via: "connect", user: strings.Repeat("u", 100), password: "hunter22", host: "192.0.2.1"}
	buf.Reset()
	s.audit("login", a.auditAttrs()...)
	if strings.Contains(buf.String(), "hunter22") || !strings.Contains(buf.String(), `"host":"192.0.2.1"`) || strings.Contains(buf.String(), strings.Repeat("u", 65)) {
		t.Errorf("attempt attributes: %s", buf.String())
	}
}

// TestThrottleIsSharedByServers fails logins on two servers in turn: the
// count is one, for a user that exists and for a name that does not alike;
// a right password is refused while it waits; a success clears it; and a
// server whose storage is read-only goes on with what it last read.
func TestThrottleIsSharedByServers(t *testing.T) {
	url := startTestBroker(t)
	var servers []*Server
	for _, role := range []string{RolePrimary, RoleBackup} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		s, err := Start(ctx, Config{
			Servers: []string{url}, ServicePassword: testServicePassword, AdminPassword: "admin-password",
			Role: role, Logger: startTestLogger(),
			LoginBackoff: time.Second, LoginLockAfter: 6, LoginLock: time.Hour,
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		servers = append(servers, s)
	}
	// One clock for both servers, moved by hand: under -race a bcrypt
	// check alone can outlast the 1 s back-off.
	clock := time.Now()
	for _, s := range servers {
		s.throttle.now = func() time.Time { return clock }
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	try := func(i int, user, password string) error {
		_, err := servers[i%2].passwordLogin(ctx, loginAttempt{via: "login", user: user, password: password})
		return err
	}
	for i := range LoginFree {
		for _, user := range []string{"admin", "nobody"} {
			if err := try(i, user, "wrong-password"); subjects.CodeOf(err) != subjects.CodeUnauthorized {
				t.Fatalf("%s, failure %d on server %d: %v", user, i+1, i%2, err)
			}
		}
	}
	var msgs []string
	for _, user := range []string{"admin", "nobody"} {
		err := try(LoginFree, user, "wrong-password")
		if subjects.CodeOf(err) != subjects.CodeThrottled {
			t.Fatalf("%s after %d failures on two servers: %v, want CodeThrottled", user, LoginFree, err)
		}
		msgs = append(msgs, err.Error())
	}
	if msgs[0] != msgs[1] || msgs[0] != "too many failed logins: try again in 1s" {
		t.Errorf("a user and a name that is none are told %q and %q", msgs[0], msgs[1])
	}
	if err := try(1, "admin", "admin-password"); subjects.CodeOf(err) != subjects.CodeThrottled {
		t.Fatalf("the right password during the back-off: %v, want CodeThrottled", err)
	}
	if f, _ := servers[0].loadFailures(ctx, failureKey("admin")); f.Count != LoginFree {
		t.Fatalf("refused attempts were counted: %+v", f)
	}

	clock = clock.Add(1200 * time.Millisecond)
	if err := try(0, "admin", "admin-password"); err != nil {
		t.Fatalf("the right password after the back-off: %v", err)
	}
	if f, _ := servers[1].loadFailures(ctx, failureKey("admin")); f.Count != 0 {
		t.Fatalf("a success left %+v", f)
	}
	if err := try(1, "admin", "wrong-password"); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("a failure after a success: %v, want a fresh count", err)
	}

	// A server cut off from storage goes on with what it last read, and
	// with the bucket back, the bucket's word counts again.
	if err := try(0, "nobody", "wrong-password"); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("nobody after the back-off: %v", err)
	}
	if err := try(1, "nobody", "wrong-password"); subjects.CodeOf(err) != subjects.CodeThrottled {
		t.Fatalf("nobody after %d failures: %v", LoginFree+1, err)
	}
	if err := servers[0].logins.Purge(ctx, failureKey("nobody")); err != nil {
		t.Fatal(err)
	}
	// (The throttle looks at the flag first thing, microseconds after
	// readOnlyDo sets it: the watch's poll all but never falls between.)
	readOnlyDo(t, servers[1], func() error {
		if err := try(1, "nobody", "wrong-password"); subjects.CodeOf(err) != subjects.CodeThrottled {
			return fmt.Errorf("read-only server: %v, want CodeThrottled from its last reading", err)
		}
		return nil
	})
	if err := try(1, "nobody", "wrong-password"); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("writable again, with the count cleared in the bucket: %v", err)
	}
}

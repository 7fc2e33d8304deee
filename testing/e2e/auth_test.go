package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// The login throttle of TestAuthentication: three free failures, then 1s,
// 2s, then a lock of 10s at the fifth.
var authArgs = []string{"--login-backoff", "1s", "--login-lock-after", "5", "--login-lock", "10s"}

const authLock = 10 * time.Second

// throttledMsg is the sentence of a throttled login.
var throttledMsg = regexp.MustCompile(`^too many failed logins: try again in (\d+)s$`)

// TestAuthentication checks through real processes: repeated failed logins
// slow down, then lock, a user name, whether the user exists or not, and
// a right password during the lock does not get in; an admin's revocation,
// a logout, a removed user and a changed password end sessions at once on
// both servers; and the servers' audit log records it all without a
// password or a token.
func TestAuthentication(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"), ftfstest.ServerArgs(authArgs...))
	admin := sys.Login(t, "admin")
	secrets := []string{sys.ServicePassword, sys.AdminPassword, admin.Token()}
	pw := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		pw[u] = sys.AddUser(t, u)
		secrets = append(secrets, pw[u])
	}
	alice := sys.Login(t, "alice")
	secrets = append(secrets, alice.Token())
	callout := connector{sys}

	t.Run("failed logins back off, then lock, for users and non-users alike", func(t *testing.T) {
		alicePW, bobPW := pw["alice"], pw["bob"]
		// The Login endpoint answers only a connection of the user named
		// (its reply subject must be the user's inbox), so alice's tries
		// go over her token connection; bob and a name no user has try
		// password connections (the auth callout), each from an address
		// of its own.
		wrongAlice := dialToken(t, sys, "alice", alice.Token(), "wrong-password-alice")
		rightAlice := dialToken(t, sys, "alice", alice.Token(), alicePW)
		secrets = append(secrets, "wrong-password-alice", "wrong-password-bob", "wrong-password-nobody")
		type who struct {
			name         string
			wrong, right func() (string, string) // outcome, message
		}
		viaLogin := func(c *client.Client) func() (string, string) {
			return func() (string, string) {
				s, err := c.Login(ctxFor(t, 30*time.Second))
				secrets = append(secrets, s.Token)
				return outcome(t, err)
			}
		}
		viaCallout := func(user, password, host string) func() (string, string) {
			return func() (string, string) { return calloutOutcome(callout.try(t, user, password, host)) }
		}
		all := []who{
			{"alice", viaLogin(wrongAlice), viaLogin(rightAlice)},
			{"bob", viaCallout("bob", "wrong-password-bob", "127.0.0.2"), viaCallout("bob", bobPW, "127.0.0.2")},
			{"nobody", viaCallout("nobody", "wrong-password-nobody", "127.0.0.3"), nil},
		}
		expect := func(w who, try func() (string, string), want string) string {
			t.Helper()
			got, msg := try()
			if got != want {
				t.Fatalf("%s: %s (%q), want %s", w.name, got, msg, want)
			}
			return msg
		}
		waitSecs := func(w who, msg string, lo, hi int) {
			t.Helper()
			m := throttledMsg.FindStringSubmatch(msg)
			if m == nil {
				t.Fatalf("%s: throttled with %q: does not say when to try again", w.name, msg)
			}
			if n, _ := strconv.Atoi(m[1]); n < lo || n > hi {
				t.Fatalf("%s: %q, want a wait of %d to %d s", w.name, msg, lo, hi)
			}
		}

		// Three failures are free; the fourth attempt must wait a second,
		// with the right password too, and is not counted.
		for _, w := range all {
			for range 3 {
				expect(w, w.wrong, "wrong")
			}
			waitSecs(w, expect(w, w.wrong, "throttled"), 1, 1)
			if w.right != nil {
				waitSecs(w, expect(w, w.right, "throttled"), 1, 1)
			}
		}
		time.Sleep(1300 * time.Millisecond)
		// The fourth failure doubles the wait.
		for _, w := range all {
			expect(w, w.wrong, "wrong")
			waitSecs(w, expect(w, w.wrong, "throttled"), 2, 2)
		}
		time.Sleep(2300 * time.Millisecond)
		// The fifth locks the name (a back-off would be 4s).
		for _, w := range all {
			expect(w, w.wrong, "wrong")
			try := w.right
			if try == nil {
				try = w.wrong
			}
			waitSecs(w, expect(w, try, "throttled"), 8, 10)
		}
		// A password connection refused by the throttle looks like a
		// wrong password: the broker passes no reason on.
		if c, err := sys.Dial(t, "alice", alicePW); !errors.Is(err, client.ErrUnauthorized) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("alice's password connection during the lock: %v, want ErrUnauthorized", err)
		}
		time.Sleep(authLock + 300*time.Millisecond)
		for _, w := range all {
			if w.right != nil {
				expect(w, w.right, "ok")
			} else {
				expect(w, w.wrong, "wrong") // a fresh count
			}
		}
		if c, err := sys.Dial(t, "alice", alicePW); err != nil {
			t.Fatalf("alice's password connection after the lock: %v", err)
		} else {
			c.Close()
		}
	})

	t.Run("an address trying many names is throttled", func(t *testing.T) {
		// Each server counts its own, 3x the per-name limits: 9 free
		// failures, a lock at 15. Nine attempts cannot be throttled yet;
		// by 31 one server has seen 15 failures and more.
		first := 0
		for i := 1; i <= 31 && first == 0; i++ {
			got, msg := calloutOutcome(callout.try(t, fmt.Sprintf("guess%d", i), "wrong-password-guess", "127.0.0.4"))
			switch got {
			case "throttled":
				first = i
			case "wrong":
			default:
				t.Fatalf("attempt %d: %s %q", i, got, msg)
			}
		}
		if first <= 9 {
			t.Fatalf("first throttled attempt: %d; want one after the ninth, by the 31st", first)
		}
		if got, msg := calloutOutcome(callout.try(t, "guess0", "wrong-password-guess", "127.0.0.5")); got != "wrong" {
			t.Fatalf("another address: %s %q, want a plain refusal", got, msg)
		}
	})

	// refusedEverywhere checks that c's requests fail with ErrUnauthorized
	// on both file servers: it asks until each server's counters show
	// that it answered some.
	refusedEverywhere := func(t *testing.T, c *client.Client) {
		t.Helper()
		before := whoamiCounts(t, admin)
		for round := 0; ; round++ {
			for range 10 {
				if _, err := c.WhoAmI(ctxFor(t, 30*time.Second)); !errors.Is(err, client.ErrUnauthorized) {
					t.Fatalf("whoami of %s: %v, want ErrUnauthorized", c.User(), err)
				}
			}
			after := whoamiCounts(t, admin)
			if len(after) == 2 && after["primary"] > before["primary"] && after["backup"] > before["backup"] {
				return
			}
			if round == 5 {
				t.Fatalf("whoami counts %v then %v: not both servers answered", before, after)
			}
		}
	}

	t.Run("an admin revokes every session of a user", func(t *testing.T) {
		carol := sys.Login(t, "carol")
		carol2 := sys.Login(t, "carol")
		secrets = append(secrets, carol.Token(), carol2.Token())
		if err := carol.RevokeSessions(ctxT(t), "admin"); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("a user revoking the admin's sessions: %v, want ErrForbidden", err)
		}
		if err := admin.RevokeSessions(ctxT(t), "nosuchuser"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("revoking a user that does not exist: %v, want ErrNotFound", err)
		}
		if err := admin.RevokeSessions(ctxT(t), "carol"); err != nil {
			t.Fatal(err)
		}
		refusedEverywhere(t, carol)
		refusedEverywhere(t, carol2)
		if c, err := sys.DialWith(ctxT(t), client.Credentials{User: "carol", Token: carol.Token()}); !errors.Is(err, client.ErrUnauthorized) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("a connection with a revoked token: %v, want ErrUnauthorized", err)
		}
		if _, err := admin.WhoAmI(ctxT(t)); err != nil {
			t.Fatalf("the admin's own session: %v", err)
		}

		// The same from the command line.
		carol = sys.Login(t, "carol")
		secrets = append(secrets, carol.Token())
		cli := sys.AdminCLI(t)
		out, stderr, code := cli.Run(t, nil, nil, "user", "revoke", "carol")
		if code != 0 || !strings.Contains(out, "sessions of carol revoked") {
			t.Fatalf("ftfs user revoke carol: exit %d, %q %q", code, out, stderr)
		}
		refusedEverywhere(t, carol)
		if _, stderr, code := cli.Run(t, nil, nil, "user", "revoke", "nosuchuser"); code != 1 || !strings.Contains(stderr, "nosuchuser") {
			t.Fatalf("ftfs user revoke nosuchuser: exit %d, %q", code, stderr)
		}
	})

	t.Run("logout ends the session at once", func(t *testing.T) {
		dave := sys.Login(t, "dave")
		token := dave.Token()
		secrets = append(secrets, token)
		other := dialToken(t, sys, "dave", token, "")
		if _, err := other.WhoAmI(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if err := dave.Logout(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		refusedEverywhere(t, other)
		if c, err := sys.DialWith(ctxT(t), client.Credentials{User: "dave", Token: token}); !errors.Is(err, client.ErrUnauthorized) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("a connection with a logged-out token: %v, want ErrUnauthorized", err)
		}
	})

	t.Run("a removed user and a changed password end sessions", func(t *testing.T) {
		erin := sys.Login(t, "erin")
		frank := sys.Login(t, "frank")
		secrets = append(secrets, erin.Token(), frank.Token(), "franks-new-password")
		if err := admin.RemoveUser(ctxT(t), "erin"); err != nil {
			t.Fatal(err)
		}
		refusedEverywhere(t, erin)
		if err := admin.SetPassword(ctxT(t), "frank", "franks-new-password"); err != nil {
			t.Fatal(err)
		}
		refusedEverywhere(t, frank)

		// Frank's own change takes his current password.
		secrets = append(secrets, "franks-third-password", "not-franks-password")
		cli := sys.CLI(t)
		if _, stderr, code := cli.Run(t, nil, []string{"FTFS_PASSWORD=franks-new-password"}, "login", "frank"); code != 0 {
			t.Fatal(stderr)
		}
		_, stderr, code := cli.Run(t, nil, []string{"FTFS_PASSWORD=not-franks-password", "FTFS_NEW_PASSWORD=franks-third-password"}, "user", "passwd")
		if code != 1 || !strings.Contains(stderr, "current password is wrong") {
			t.Fatalf("ftfs user passwd with a wrong current password: exit %d, %q", code, stderr)
		}
		out, stderr, code := cli.Run(t, nil, []string{"FTFS_PASSWORD=franks-new-password", "FTFS_NEW_PASSWORD=franks-third-password"}, "user", "passwd")
		if code != 0 || !strings.Contains(out, "password of frank changed") {
			t.Fatalf("ftfs user passwd: exit %d, %q %q", code, out, stderr)
		}
		if c, err := sys.Dial(t, "frank", "franks-new-password"); err == nil {
			c.Close()
			t.Fatal("frank's old password still connects")
		}
	})

	t.Run("the audit log records it all, and no secret", func(t *testing.T) {
		ftfstest.SameBytes(t, sys.PutRandom(t, alice, "audit/a.bin", 1000), ftfstest.GetBytes(t, alice, "audit/a.bin"))
		if _, err := alice.Rename(ctxT(t), "audit/a.bin", "audit/b.bin", false); err != nil {
			t.Fatal(err)
		}
		if err := alice.Delete(ctxT(t), "audit/b.bin"); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, alice.Token())
		for _, want := range []struct {
			event string
			attrs []string
		}{
			{"login", []string{"user=alice", "via=login"}},
			{"login", []string{"user=admin", "via=connect", "host=127.0.0.1"}},
			{"login failed", []string{"user=alice", "via=login", "failures=5"}},
			{"login failed", []string{"user=nobody", "via=connect", "host=127.0.0.3"}},
			{"login throttled", []string{"user=bob", "via=connect", "host=127.0.0.2", "locked=true"}},
			{"login throttled", []string{"user=nobody", "locked=false"}},
			{"login throttled", []string{"host=127.0.0.4", "by_host=true"}},
			{"logout", []string{"user=dave"}},
			{"sessions revoked", []string{"user=carol", "by=admin", "revoked=2"}},
			{"user added", []string{"user=carol", "admin=false", "by=admin"}},
			{"user removed", []string{"user=erin", "by=admin"}},
			{"password changed", []string{"user=frank", "by=admin"}},
			{"file renamed", []string{"from=audit/a.bin", "to=audit/b.bin", "by=alice"}},
			{"file deleted", []string{"name=audit/b.bin", "by=alice"}},
		} {
			// A server may answer before its log line reaches the
			// harness (the delete's line comes a few ms after).
			ftfstest.Eventually(t, 5*time.Second, fmt.Sprintf("an audit line %q with %v", want.event, want.attrs), func() bool {
				return hasAuditLine(sys.Logs("primary")+sys.Logs("backup"), want.event, want.attrs...)
			})
		}
		var all strings.Builder
		for _, p := range append([]string{"primary", "backup"}, sys.BrokerNames()...) {
			all.WriteString(sys.Logs(p))
		}
		logs := all.String()
		if !strings.Contains(logs, "audit=true") {
			t.Fatal("no audit lines captured at all")
		}
		for _, s := range secrets {
			if s == "" {
				continue
			}
			sum := sha256.Sum256([]byte(s))
			for _, v := range []string{s, hex.EncodeToString(sum[:])} {
				if strings.Contains(logs, v) {
					t.Errorf("a password, token or session key is in the logs: %q", v)
				}
			}
		}
	})
}

// outcome classifies a Login error: "ok", "wrong" (ErrUnauthorized),
// "throttled" (ErrThrottled), with the server's sentence.
func outcome(t *testing.T, err error) (string, string) {
	t.Helper()
	var ce *client.Error
	msg := ""
	if errors.As(err, &ce) {
		msg = ce.Message
	}
	switch {
	case err == nil:
		return "ok", ""
	case errors.Is(err, client.ErrThrottled):
		return "throttled", msg
	case errors.Is(err, client.ErrUnauthorized):
		return "wrong", msg
	}
	t.Fatalf("login: %v", err)
	return "", ""
}

// calloutOutcome classifies the auth callout's answer like outcome.
func calloutOutcome(refusal string) (string, string) {
	switch {
	case refusal == "":
		return "ok", ""
	case throttledMsg.MatchString(refusal):
		return "throttled", refusal
	case refusal == "wrong user name or password":
		return "wrong", refusal
	}
	return "other", refusal
}

// dialToken connects as user with a session token; the client's Login
// sends password.
func dialToken(t *testing.T, sys *ftfstest.System, user, token, password string) *client.Client {
	t.Helper()
	c, err := sys.DialWith(ctxT(t), client.Credentials{User: user, Token: token, Password: password})
	if err != nil {
		t.Fatalf("dial as %s with a token: %v", user, err)
	}
	t.Cleanup(c.Close)
	return c
}

// connector makes password connections from a loopback address of its
// own (127.0.0.2, ...: the broker sees that as the client's host) and
// reads the auth callout's reason for a refusal from the broker's log: a
// client is told only "authorization violation".
type connector struct {
	sys *ftfstest.System
}

// calloutRefusal is how the broker logs the callout's refusal.
var calloutRefusal = regexp.MustCompile(`(?i)auth callout service returned an error: ([^"]*)`)

func (c connector) refusals() []string {
	var out []string
	for _, m := range calloutRefusal.FindAllStringSubmatch(c.sys.Logs(c.sys.BrokerNames()[0]), -1) {
		out = append(out, strings.TrimSpace(m[1]))
	}
	return out
}

// try connects as user from host and returns the callout's refusal, or ""
// when the connection was authorized. The client's own error must be the
// broker's plain refusal, whatever the reason.
func (c connector) try(t *testing.T, user, password, host string) string {
	t.Helper()
	before := len(c.refusals())
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(host)}}
	nc, err := c.sys.Connect(nats.UserInfo(user, password), nats.SetCustomDialer(d),
		nats.CustomInboxPrefix(subjects.Inbox(user)), nats.NoReconnect())
	if err == nil {
		nc.Close()
		return ""
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("connect as %s from %s: %v, want an authorization violation", user, host, err)
	}
	var reason string
	ftfstest.Eventually(t, 10*time.Second, "the broker's log of the refusal", func() bool {
		r := c.refusals()
		if len(r) > before {
			reason = r[len(r)-1]
			return true
		}
		return false
	})
	return reason
}

// whoamiCounts maps each file server role to the whoami requests it has
// taken (micro stats).
func whoamiCounts(t *testing.T, admin *client.Client) map[string]int {
	t.Helper()
	st, err := admin.Status(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, in := range st.Instances {
		for _, e := range in.Endpoints {
			if e.Subject == subjects.WhoAmI {
				out[in.Role] += e.Requests
			}
		}
	}
	return out
}

// hasAuditLine says whether a log (slog text lines) has an audit line of
// event with every attribute of attrs.
func hasAuditLine(logs, event string, attrs ...string) bool {
	msg := "msg=" + event
	if strings.ContainsAny(event, " ") {
		msg = "msg=" + strconv.Quote(event)
	}
next:
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, " audit=true") || !strings.Contains(line+" ", " "+msg+" ") {
			continue
		}
		for _, a := range attrs {
			if !strings.Contains(line+" ", " "+a+" ") {
				continue next
			}
		}
		return true
	}
	return false
}

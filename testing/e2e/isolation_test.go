package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestUserConnectionsAreIsolated checks what a logged-in user's own NATS
// connection may not do: read storage, serve requests, or read another
// user's replies.
func TestUserConnectionsAreIsolated(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	sys.AddUser(t, "alice")
	sys.AddUser(t, "bob")
	alice := sys.Login(t, "alice")
	bob := sys.Login(t, "bob")

	var broker violations
	nc, err := sys.Connect(nats.Token(alice.Token()), nats.CustomInboxPrefix(subjects.Inbox("alice")), broker.handler())
	if err != nil {
		t.Fatalf("alice's raw connection with her session token: %v", err)
	}
	defer nc.Close()

	for _, subj := range []string{"$O.>", "$KV.>", "$JS.API.>", "$SYS.>", subjects.Prefix + ".>", subjects.Login, subjects.ChunkPrefix + ".>", subjects.Inbox("bob") + ".>", "_INBOX.>", subjects.AuthCallout, ">"} {
		broker.refused(t, "subscribe to "+subj, func() error {
			sub, err := nc.SubscribeSync(subj)
			if err != nil {
				return err
			}
			defer sub.Unsubscribe()
			return nc.FlushTimeout(2 * time.Second)
		})
	}
	for _, subj := range []string{"$JS.API.STREAM.LIST", "$JS.API.STREAM.PURGE.OBJ_" + subjects.FilesBucket, "$JS.API.CONSUMER.CREATE.OBJ_" + subjects.FilesBucket, "$KV.ftfs-users.alice",
		subjects.ObjectMeta(subjects.FilesBucket, "forged.txt"), "$SYS.REQ.SERVER.PING", subjects.Inbox("bob") + ".x", subjects.AuthCallout,
		// A false "server gone" notice would make every client resend.
		subjects.ServerGone,
		// Requests in another user's name, and micro discovery, which
		// answers any reply subject.
		subjects.For("bob", subjects.List), subjects.For("bob", subjects.BrokerInfo), subjects.DiscoveryPing, subjects.DiscoveryStats,
		subjects.UploadEnded, subjects.UploadOverrun, subjects.DownloadImport} {
		broker.refused(t, "publish to "+subj, func() error {
			if err := nc.Publish(subj, []byte("{}")); err != nil {
				return err
			}
			return nc.FlushTimeout(2 * time.Second)
		})
	}

	// A request made to answer into someone else's inbox gets no answer
	// there: the file servers check the reply subject against the session.
	bobNC, err := sys.Connect(nats.Token(bob.Token()), nats.CustomInboxPrefix(subjects.Inbox("bob")))
	if err != nil {
		t.Fatal(err)
	}
	defer bobNC.Close()
	trap, err := bobNC.SubscribeSync(subjects.Inbox("bob") + ".stolen")
	if err != nil {
		t.Fatal(err)
	}
	if err := bobNC.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{subjects.WhoAmI, subjects.Download} {
		m := nats.NewMsg(subjects.For("alice", subj))
		m.Header.Set(subjects.HeaderSession, alice.Token())
		m.Reply = subjects.Inbox("bob") + ".stolen"
		m.Data = []byte(`{"name":"alice.txt","version":"x"}`)
		if subj == subjects.WhoAmI {
			m.Data = []byte(`{}`)
		}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := trap.NextMsg(time.Second); err == nil {
		t.Fatalf("bob's inbox received a reply to alice's request: %q %v", m.Data, m.Header)
	}

	// Connections without valid credentials do not get in at all.
	for name, opt := range map[string]nats.Option{
		"wrong password": nats.UserInfo("alice", "wrong-password"),
		"forged token":   nats.Token("00000000-0000-0000-0000-000000000000"),
		"no credentials": func(*nats.Options) error { return nil },
	} {
		if c, err := sys.Connect(opt, nats.Timeout(5*time.Second)); err == nil {
			c.Close()
			t.Fatalf("%s: connected", name)
		}
	}

	// And the service still works for everyone.
	for _, user := range []string{"alice", "bob"} {
		c := sys.Login(t, user)
		want := sys.PutRandom(t, c, user+".txt", 1000)
		ftfstest.SameBytes(t, want, ftfstest.GetBytes(t, c, user+".txt"))
	}
}

// violations gathers the permission errors a broker sends a connection,
// for the tests of what an identity may not do.
type violations struct {
	mu   sync.Mutex
	seen []string
}

// handler is the connection option that gathers them.
func (v *violations) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		v.mu.Lock()
		v.seen = append(v.seen, err.Error())
		v.mu.Unlock()
	})
}

// refused runs try and fails the test unless the broker refused it: try
// itself returns a permissions violation, or one reaches the connection
// within a few seconds.
func (v *violations) refused(t *testing.T, what string, try func() error) {
	t.Helper()
	v.mu.Lock()
	v.seen = nil
	v.mu.Unlock()
	if err := try(); err != nil && strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
		return
	}
	ftfstest.Eventually(t, 5*time.Second, what+" refused", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, seen := range v.seen {
			if strings.Contains(strings.ToLower(seen), "permissions violation") {
				return true
			}
		}
		return false
	})
}

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// What an attacker with a valid account tries: aim the reply of a request
// (or of a chunk's JetStream ack) at a subject where a message does harm,
// and have a file server, a broker or JetStream publish there with its own
// rights. Every row of TestRepliesGoNowhereButTheAskersInbox is one such
// request; before the accounts were split, each of them deleted, purged or
// overwrote what its reply subject named.

// attackTarget is a subject where a published message does harm, and the
// connection that watches it (in the account where the harm would be).
type attackTarget struct {
	name    string
	subject string
	watch   *nats.Conn
}

// attackState is what must not change: the files stream, the admin's user
// record, a login lock and another user's file.
type attackState struct {
	streamMsgs uint64
	adminRev   uint64
	lockRev    uint64
	bobMeta    string
}

func TestRepliesGoNowhereButTheAskersInbox(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	sys.AddUser(t, "alice")
	sys.AddUser(t, "bob")
	alice := sys.Login(t, "alice")
	bob := sys.Login(t, "bob")
	bobData := sys.PutRandom(t, bob, "bob.txt", 3000)
	sys.PutRandom(t, alice, "alice.txt", 1000)
	// A locked login name, whose lock a forged reply could lift.
	lockName := "carol"
	for range 4 {
		if c, err := sys.Dial(t, lockName, "not-the-password"); err == nil {
			c.Close()
		}
	}
	lockKey := loginFailureKey(lockName)

	storage := sys.OperatorConn(t) // watches Account, where JetStream is
	service := sys.ServiceConn(t)  // listens "as the service"
	bobNC, err := sys.Connect(nats.Token(bob.Token()), nats.CustomInboxPrefix(subjects.Inbox("bob")))
	if err != nil {
		t.Fatal(err)
	}
	defer bobNC.Close()
	bobMeta := subjects.ObjectMeta(subjects.FilesBucket, "bob.txt")
	targets := []attackTarget{
		{"stream delete", "$JS.API.STREAM.DELETE." + subjects.ObjectStream(subjects.FilesBucket), storage},
		{"stream purge", "$JS.API.STREAM.PURGE." + subjects.ObjectStream(subjects.FilesBucket), storage},
		{"admin's user record", subjects.KVKey(subjects.UsersBucket, "admin"), storage},
		{"a login lock", subjects.KVKey(subjects.LoginsBucket, lockKey), storage},
		{"another user's file meta", bobMeta, storage},
		{"another user's inbox", subjects.Inbox("bob") + ".trap", bobNC},
		{"a subject the service listens on", "ftfs.trap.service", service},
	}
	var mu sync.Mutex
	landed := map[string][]string{}
	for _, tg := range targets {
		sub, err := tg.watch.Subscribe(tg.subject, func(m *nats.Msg) {
			mu.Lock()
			landed[tg.name] = append(landed[tg.name], fmt.Sprintf("%q %v", m.Data, m.Header))
			mu.Unlock()
		})
		if err != nil {
			t.Fatalf("watch %s: %v", tg.subject, err)
		}
		defer sub.Unsubscribe()
	}
	for _, nc := range []*nats.Conn{storage, service, bobNC} {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	// Alice's own connection, with her real session, as any NATS client
	// would open it; its permission errors are expected and ignored.
	nc, err := sys.Connect(nats.Token(alice.Token()), nats.CustomInboxPrefix(subjects.Inbox("alice")),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// An open direct upload of hers, for the chunk rows.
	w := &wireUser{nc: nc, user: "alice", token: alice.Token()}
	r := w.ask(t, subjects.UploadOpen, wireOwnSession, nil, []byte(`{"name":"up.bin","size":1048576,"direct":true}`))
	var st subjects.UploadState
	if r.code != "" || json.Unmarshal(r.data, &st) != nil || st.Direct == nil {
		t.Fatalf("open a direct upload: %s %s", r.code, r.data)
	}
	up, err := sys.Connect(nats.Token(st.Direct.Token), nats.CustomInboxPrefix(subjects.UploadInbox("alice", st.Upload)),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("upload connection: %v", err)
	}
	defer up.Close()
	relayed := w.open(t, "relayed.bin", 10)
	before := snapshot(t, sys, lockKey, st.Upload)

	type request struct {
		name    string
		conn    *nats.Conn
		subject string
		session string // "own", "none", "forged"
		header  map[string]string
		body    string
	}
	// Every row was a way into storage or into bob's inbox at d84e10e,
	// but the two marked new, which check the endpoints added since.
	requests := []request{
		{"list without a session", nc, subjects.For("alice", subjects.List), "none", nil, `{}`},
		{"list with a forged session", nc, subjects.For("alice", subjects.List), "forged", nil, `{}`},
		{"delete with a forged session", nc, subjects.For("alice", subjects.Delete), "forged", nil, `{"name":"bob.txt"}`},
		{"malformed login", nc, subjects.For("alice", subjects.Login), "none", nil, `{`},
		{"login with an unknown field", nc, subjects.For("alice", subjects.Login), "none", nil, `{"user":"alice","password":"x","admin":true}`},
		{"login as bob", nc, subjects.For("alice", subjects.Login), "none", nil, `{"user":"bob","password":"whatever-it-is"}`},
		{"chunk without headers", nc, subjects.For("alice", subjects.Chunk(relayed.Instance)), "none", nil, `x`},
		{"chunk of an upload its server does not hold", nc, subjects.For("alice", subjects.Chunk(relayed.Instance)), "none",
			map[string]string{subjects.HeaderUpload: "NOSUCHUPLOAD", subjects.HeaderChunk: "0"}, `0123456789`},
		{"broker info", nc, subjects.For("alice", subjects.BrokerInfo), "none", nil, ``},
		{"discovery ping", nc, subjects.DiscoveryPing, "none", nil, ``},
		{"discovery info", nc, subjects.DiscoveryInfo, "none", nil, ``},
		{"discovery stats", nc, subjects.DiscoveryStats, "none", nil, ``},
		{"all-services ping", nc, "$SRV.PING", "none", nil, ``},
		{"upload-connection chunk", up, st.Direct.Subject, "none", map[string]string{subjects.HeaderChunk: "0"}, `chunk`},
		{"upload-connection chunk on the storage subject", up, subjects.ObjectChunks(subjects.FilesBucket, st.Upload), "none", nil, `chunk`},
		{"stats without a session (new)", nc, subjects.For("alice", subjects.Stats), "none", nil, `{}`},
		{"stats with her session (new)", nc, subjects.For("alice", subjects.Stats), "own", nil, `{}`},
		// A rule she may set (her own home); answered, it would be stored.
		{"access set with her session (new)", nc, subjects.For("alice", subjects.AccessSet), "own", nil,
			`{"prefix":"home/alice/","lines":["read,list: *"]}`},
		{"access rm with her session (new)", nc, subjects.For("alice", subjects.AccessRemove), "own", nil, `{"prefix":"home/alice/"}`},
		{"share link made with her session (new)", nc, subjects.For("alice", subjects.ShareCreate), "own", nil, `{"name":"alice.txt"}`},
		{"share links listed with her session (new)", nc, subjects.For("alice", subjects.ShareList), "own", nil, `{}`},
		{"link request with a link token (new)", nc, subjects.For("alice", subjects.LinkInfo), "none",
			map[string]string{subjects.HeaderLink: strings.Repeat("A", 43)}, `{}`},
	}
	for _, rq := range requests {
		t.Run(rq.name, func(t *testing.T) {
			for _, tg := range targets {
				m := nats.NewMsg(rq.subject)
				m.Reply = tg.subject
				m.Data = []byte(rq.body)
				switch rq.session {
				case "own":
					m.Header.Set(subjects.HeaderSession, alice.Token())
				case "forged":
					m.Header.Set(subjects.HeaderSession, "00000000-0000-0000-0000-000000000000")
				}
				for k, v := range rq.header {
					m.Header.Set(k, v)
				}
				_ = rq.conn.PublishMsg(m) // refused by the broker, or published
			}
			_ = rq.conn.Flush()
			// A live service answers (or refuses) each of these within a
			// few milliseconds; a second is room for a busy machine.
			time.Sleep(time.Second)
			mu.Lock()
			defer mu.Unlock()
			for _, tg := range targets {
				if got := landed[tg.name]; len(got) > 0 {
					t.Errorf("%s (%s) received %d messages, the first %s", tg.name, tg.subject, len(got), got[0])
				}
				delete(landed, tg.name)
			}
		})
	}
	if rules, err := alice.ListAccess(ftfstest.Context(t, 10*time.Second)); err != nil || len(rules) != 0 {
		t.Errorf("stored rules alice sees after requests answered nowhere: %+v, %v; want none", rules, err)
	}
	after := snapshot(t, sys, lockKey, st.Upload)
	if after != before {
		t.Errorf("storage changed: before %+v, after %+v", before, after)
	}
	ftfstest.SameBytes(t, bobData, ftfstest.GetBytes(t, bob, "bob.txt"))
	if shares, err := alice.Shares(ctxT(t)); err != nil || len(shares) != 0 {
		t.Errorf("alice's share links after requests answered nowhere: %v %v, want none", shares, err)
	}

	// The service answers the same requests into the asker's own inbox.
	if r := w.ask(t, subjects.List, wireNoSession, nil, []byte(`{}`)); r.code != subjects.CodeUnauthorized {
		t.Errorf("list without a session into her own inbox: %q %s, want %s", r.code, r.text, subjects.CodeUnauthorized)
	}
	if r := w.ask(t, subjects.Login, wireNoSession, nil, []byte(`{"user":"bob","password":"whatever-it-is"}`)); r.code != subjects.CodeUnauthorized {
		t.Errorf("login as bob over alice's connection: %q %s, want %s", r.code, r.text, subjects.CodeUnauthorized)
	}
	if r := w.ask(t, subjects.Stats, wireOwnSession, nil, []byte(`{}`)); r.code != "" || !strings.Contains(string(r.data), `"id"`) {
		t.Errorf("stats into her own inbox: %q %s %s", r.code, r.text, r.data)
	}
}

// snapshot reads what TestRepliesGoNowhereButTheAskersInbox must leave
// unchanged. The chunks of the attacker's own direct upload, which her
// upload connection may store, are not counted.
func snapshot(t *testing.T, sys *ftfstest.System, lockKey, upload string) attackState {
	t.Helper()
	js, err := jetstream.New(sys.OperatorConn(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st attackState
	stream, err := js.Stream(ctx, subjects.ObjectStream(subjects.FilesBucket))
	if err != nil {
		t.Fatalf("files stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.streamMsgs = info.State.Msgs - wireChunksStored(t, sys, upload)
	for _, kv := range []struct {
		bucket, key string
		rev         *uint64
	}{{subjects.UsersBucket, "admin", &st.adminRev}, {subjects.LoginsBucket, lockKey, &st.lockRev}} {
		b, err := js.KeyValue(ctx, kv.bucket)
		if err != nil {
			t.Fatal(err)
		}
		e, err := b.Get(ctx, kv.key)
		if err != nil {
			t.Fatalf("%s %s: %v", kv.bucket, kv.key, err)
		}
		*kv.rev = e.Revision()
	}
	m, err := stream.GetLastMsgForSubject(ctx, subjects.ObjectMeta(subjects.FilesBucket, "bob.txt"))
	if err != nil {
		t.Fatal(err)
	}
	st.bobMeta = fmt.Sprintf("%d %s", m.Sequence, base64.StdEncoding.EncodeToString(m.Data))
	return st
}

// loginFailureKey is the key the file servers count a name's failed logins
// under (primary's throttle).
func loginFailureKey(name string) string {
	sum := sha256.Sum256([]byte("ftfs login\x00" + name))
	return hex.EncodeToString(sum[:])
}

// TestEndedDirectUploadsStopStoringAtOnce: a direct upload's connection
// publishing into storage without pause, as a hostile client would, is cut
// by the brokers the moment its upload is aborted or committed, or once it
// has published more than its upload's size; afterwards the files stream
// holds no chunk of an upload that was aborted or overran.
func TestEndedDirectUploadsStopStoringAtOnce(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	sys.AddUser(t, "mallory")
	c := sys.Login(t, "mallory")
	nc, err := sys.Connect(nats.Token(c.Token()), nats.CustomInboxPrefix(subjects.Inbox("mallory")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w := &wireUser{nc: nc, user: "mallory", token: c.Token()}
	chunk := ftfstest.RandomBytes(subjects.ChunkSize)

	// flood opens a direct upload of size bytes and publishes chunks on its
	// connection without pause (no fence headers, no waiting for acks)
	// until the connection is cut or a minute passes; it returns the
	// upload and a function that waits for the flood to end and says how
	// many chunks were published.
	flood := func(t *testing.T, name string, size int64) (subjects.UploadState, func() int) {
		t.Helper()
		r := w.ask(t, subjects.UploadOpen, wireOwnSession, nil, fmt.Appendf(nil, `{"name":%q,"size":%d,"direct":true}`, name, size))
		var st subjects.UploadState
		if r.code != "" || json.Unmarshal(r.data, &st) != nil || st.Direct == nil {
			t.Fatalf("open %s: %s %s %s", name, r.code, r.text, r.data)
		}
		up, err := sys.Connect(nats.Token(st.Direct.Token), nats.CustomInboxPrefix(subjects.UploadInbox("mallory", st.Upload)),
			nats.MaxReconnects(0), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatalf("upload connection: %v", err)
		}
		var sent atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer up.Close()
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) {
				if err := up.Publish(st.Direct.Subject, chunk); err != nil {
					return // cut
				}
				sent.Add(1)
				if sent.Load()%8 == 0 {
					if err := up.FlushTimeout(5 * time.Second); err != nil {
						return
					}
				}
			}
		}()
		return st, func() int {
			select {
			case <-done:
			case <-time.After(90 * time.Second):
				t.Fatalf("%s: the upload connection was never cut", name)
			}
			return int(sent.Load())
		}
	}
	noChunksLeft := func(t *testing.T, st subjects.UploadState) {
		t.Helper()
		ftfstest.Eventually(t, 10*time.Second, "no chunk of the upload left in storage", func() bool {
			return wireChunksStored(t, sys, st.Upload) == 0
		})
	}

	t.Run("aborted", func(t *testing.T) {
		st, wait := flood(t, "aborted.bin", 64<<20)
		ftfstest.Eventually(t, 10*time.Second, "chunks landing", func() bool { return wireChunksStored(t, sys, st.Upload) > 0 })
		abortedAt := time.Now()
		if r := w.ask(t, subjects.UploadAbort, wireOwnSession, nil, fmt.Appendf(nil, `{"upload":%q}`, st.Upload)); r.code != "" {
			t.Fatalf("abort: %s %s", r.code, r.text)
		}
		sent := wait()
		if took := time.Since(abortedAt); took > 10*time.Second {
			t.Errorf("the upload connection went on for %v after the abort", took)
		}
		t.Logf("%d chunks published, cut %v after the abort", sent, time.Since(abortedAt).Round(time.Millisecond))
		noChunksLeft(t, st)
	})

	t.Run("past its size", func(t *testing.T) {
		const size = 2 << 20
		st, wait := flood(t, "overrun.bin", size)
		sent := wait()
		limit := subjects.UploadConnLimit(size)
		// Cut within a moment of the limit: at most a few hundred MB/s for
		// the broker's look every 100 ms, on a busy machine several.
		if bytes := int64(sent) * subjects.ChunkSize; bytes > limit+256<<20 {
			t.Errorf("%d bytes published against a %d-byte upload (limit %d) before the cut", bytes, size, limit)
		}
		t.Logf("%d chunks (%d MiB) published against a %d MiB upload", sent, sent/2, size>>20)
		noChunksLeft(t, st)
		if r := w.ask(t, subjects.UploadResume, wireOwnSession, nil, fmt.Appendf(nil, `{"upload":%q}`, st.Upload)); r.code != subjects.CodeNotFound {
			t.Errorf("resume of the overrun upload: %q %s, want %s", r.code, r.text, subjects.CodeNotFound)
		}
	})

	t.Run("committed", func(t *testing.T) {
		// A client that keeps its upload connection open past the commit,
		// to write into the file it has just committed, is cut.
		data := ftfstest.RandomBytes(2 * subjects.ChunkSize)
		r := w.ask(t, subjects.UploadOpen, wireOwnSession, nil, fmt.Appendf(nil, `{"name":"committed.bin","size":%d,"direct":true}`, len(data)))
		var st subjects.UploadState
		if r.code != "" || json.Unmarshal(r.data, &st) != nil || st.Direct == nil {
			t.Fatalf("open: %s %s %s", r.code, r.text, r.data)
		}
		up, err := sys.Connect(nats.Token(st.Direct.Token), nats.CustomInboxPrefix(subjects.UploadInbox("mallory", st.Upload)), nats.MaxReconnects(0))
		if err != nil {
			t.Fatalf("upload connection: %v", err)
		}
		defer up.Close()
		js, err := jetstream.New(up)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := range 2 {
			m := nats.NewMsg(st.Direct.Subject)
			m.Data = data[i*subjects.ChunkSize : (i+1)*subjects.ChunkSize]
			m.Header.Set(subjects.HeaderChunk, fmt.Sprint(i))
			if _, err := js.PublishMsg(ctx, m); err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
		}
		sum := sha256.Sum256(data)
		digest := subjects.Digest(sum[:])
		if r := w.ask(t, subjects.UploadCommit, wireOwnSession, nil, fmt.Appendf(nil, `{"upload":%q,"size":%d,"digest":%q,"chunks":2}`, st.Upload, len(data), digest)); r.code != "" {
			t.Fatalf("commit: %s %s", r.code, r.text)
		}
		ftfstest.Eventually(t, 10*time.Second, "the upload connection cut after the commit", up.IsClosed)
		ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, c, "committed.bin"))
	})
}

package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/broker"
	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/fileserver"
	"github.com/ftfs/ftfs/subjects"
)

const (
	servicePassword = "client-test-service"
	adminPassword   = "client-test-admin"
)

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// system is a broker and file servers in this process.
type system struct {
	url     string
	servers []*fileserver.Server
}

func startSystem(t *testing.T, roles ...string) *system {
	t.Helper()
	b, err := broker.Start(broker.Config{Port: -1, HTTPPort: -1, DataDir: t.TempDir(), ServicePassword: servicePassword, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	sys := &system{url: b.ClientURL()}
	for _, role := range roles {
		sys.startServer(t, role)
	}
	return sys
}

func (sys *system) startServer(t *testing.T, role string) *fileserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := fileserver.Start(ctx, fileserver.Config{Servers: []string{sys.url}, ServicePassword: servicePassword, AdminPassword: adminPassword, Role: role, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	sys.servers = append(sys.servers, s)
	return s
}

func (sys *system) login(t *testing.T, user, password string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, []string{sys.url}, client.Credentials{User: user, Password: password}, append([]client.Option{client.WithRequestTimeout(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestRoundTripsOfEverySize(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary, fileserver.RoleBackup)
	c := sys.login(t, fileserver.AdminUser, adminPassword)
	ctx := context.Background()
	for _, n := range []int{0, 1, subjects.ChunkSize - 1, subjects.ChunkSize, subjects.ChunkSize + 1, 5*subjects.ChunkSize + 3} {
		data := randomBytes(n)
		fi, err := c.Put(ctx, "f.bin", bytes.NewReader(data), int64(n))
		if err != nil {
			t.Fatalf("put %d bytes: %v", n, err)
		}
		var got bytes.Buffer
		if _, err := c.Get(ctx, "f.bin", &got); err != nil {
			t.Fatalf("get %d bytes: %v", n, err)
		}
		if !bytes.Equal(got.Bytes(), data) || fi.Size != int64(n) {
			t.Fatalf("%d bytes: round trip differs (got %d)", n, got.Len())
		}
	}
	// Unknown size (stdin).
	data := randomBytes(3*subjects.ChunkSize + 9)
	if _, err := c.Put(ctx, "stdin.bin", io.MultiReader(bytes.NewReader(data)), -1); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Stat(ctx, "stdin.bin"); err != nil || fi.Size != int64(len(data)) {
		t.Fatalf("stat: %v %+v", err, fi)
	}
}

func TestErrorsAreSentinels(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	admin := sys.login(t, fileserver.AdminUser, adminPassword)
	ctx := context.Background()
	if _, err := client.Dial(ctx, []string{sys.url}, client.Credentials{User: "admin", Password: "wrong-password"}); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("bad password: %v", err)
	}
	if _, err := admin.Stat(ctx, "missing"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("stat missing: %v", err)
	}
	if _, err := admin.Stat(ctx, "../x"); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if err := admin.AddUser(ctx, "alice", "alice-password", false); err != nil {
		t.Fatal(err)
	}
	if err := admin.AddUser(ctx, "alice", "alice-password", false); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("add twice: %v", err)
	}
	for _, u := range []string{"zoe", "bob"} {
		if err := admin.AddUser(ctx, u, u+"-password", false); err != nil {
			t.Fatal(err)
		}
	}
	users, err := admin.ListUsers(ctx)
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	if err != nil || strings.Join(names, " ") != "admin alice bob zoe" {
		t.Fatalf("user list %v (%v), want it by name", names, err)
	}
	if _, err := admin.Put(ctx, "admins.txt", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	alice := sys.login(t, "alice", "alice-password")
	if err := alice.Delete(ctx, "admins.txt"); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("non-owner delete: %v", err)
	}
	if _, err := alice.Put(ctx, "admins.txt", bytes.NewReader([]byte("y")), 1); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("non-owner overwrite: %v", err)
	}
	if _, err := alice.ListUsers(ctx); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("non-admin list users: %v", err)
	}
	// One's own password takes the current one; an open session is not
	// enough.
	if err := alice.SetPassword(ctx, "alice", "taken-over-password"); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("own password without the current one: %v", err)
	}
	if err := alice.ChangePassword(ctx, "not-alices-password", "taken-over-password"); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("own password with a wrong current one: %v", err)
	}
	if err := alice.ChangePassword(ctx, "alice-password", "alice-password-2"); err != nil {
		t.Fatalf("own password with the current one: %v", err)
	}
	alice = sys.login(t, "alice", "alice-password-2")
	if _, err := alice.Put(ctx, "admins.txt", bytes.NewReader([]byte("y")), 1, client.NoOverwrite()); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("no-overwrite put: %v", err)
	}
	before, err := admin.Stat(ctx, "admins.txt")
	if err != nil {
		t.Fatal(err)
	}
	moved, err := admin.Rename(ctx, "admins.txt", "b.txt", false)
	if err != nil {
		t.Fatal(err)
	}
	if !moved.Modified.Equal(before.Modified) {
		t.Fatalf("mv changed the modification time from %v to %v", before.Modified, moved.Modified)
	}
	if err := admin.Delete(ctx, "b.txt"); err != nil {
		t.Fatal(err)
	}
	files, err := alice.List(ctx, "")
	if err != nil || len(files) != 0 {
		t.Fatalf("list after delete: %v %v", err, files)
	}
}

func TestUploadMovesToTheOtherServerWhenItsServerStops(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary, fileserver.RoleBackup)
	c := sys.login(t, fileserver.AdminUser, adminPassword, client.WithRelayedUploads())
	data := randomBytes(64 << 20)
	var stopped bool
	var last client.Progress
	fi, err := c.Put(context.Background(), "big.bin", bytes.NewReader(data), int64(len(data)), client.OnProgress(func(p client.Progress) {
		last = p
		if !stopped && p.Done > 0 && p.Done < p.Total {
			stopped = true
			for _, s := range sys.servers {
				if s.Instance() == p.Instance {
					s.Stop() // the upload waits meanwhile, then must move on
				}
			}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !stopped || last.Failovers == 0 || last.Resent >= int64(len(data))/4 {
		t.Fatalf("progress %+v: want a failover re-sending well under the file", last)
	}
	var got bytes.Buffer
	if _, err := c.Get(context.Background(), "big.bin", &got); err != nil || !bytes.Equal(got.Bytes(), data) || fi.Size != int64(len(data)) {
		t.Fatalf("get after failover: %v equal=%v", err, bytes.Equal(got.Bytes(), data))
	}
}

// TestCommitGoesToAnyServerWhenItsHolderIsGone checks that a commit,
// sent to the server holding the upload first, goes to the other server
// when the holder has stopped after acknowledging every chunk.
func TestCommitGoesToAnyServerWhenItsHolderIsGone(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary, fileserver.RoleBackup)
	c := sys.login(t, fileserver.AdminUser, adminPassword, client.WithRelayedUploads())
	data := randomBytes(2 * subjects.ChunkSize)
	stopped := false
	fi, err := c.Put(context.Background(), "holder-gone.bin", bytes.NewReader(data), int64(len(data)), client.OnProgress(func(p client.Progress) {
		if p.Done < p.Total {
			time.Sleep(150 * time.Millisecond) // past the reports' throttle: the last ack is reported
			return
		}
		for _, s := range sys.servers {
			if s.Instance() == p.Instance && !stopped {
				stopped = true
				s.Stop()
			}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !stopped {
		t.Fatal("the holder was not stopped before the commit")
	}
	var got bytes.Buffer
	if _, err := c.Get(context.Background(), "holder-gone.bin", &got); err != nil || !bytes.Equal(got.Bytes(), data) || fi.Size != int64(len(data)) {
		t.Fatalf("get: %v, equal %v", err, bytes.Equal(got.Bytes(), data))
	}
}

// TestSlowServerIsNotAskedTwiceButASilentOneIs checks the keepalive
// protocol with a hand-made file server: one that works longer than the
// request timeout but sends keepalives gets the request once; one that
// falls silent gets it again, on the same reply subject, after the timeout.
func TestSlowServerIsNotAskedTwiceButASilentOneIs(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, []string{sys.url}, client.Credentials{User: fileserver.AdminUser, Password: adminPassword}, client.WithRequestTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	sys.servers[0].Stop() // from here on, the hand-made server answers

	svc, err := nats.Connect(sys.url, nats.UserInfo(subjects.FrontUser, servicePassword), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	requests := make(chan *nats.Msg, 10)
	sub, err := svc.ChanQueueSubscribe(subjects.Stat, subjects.QueueGroup, requests)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	answer := func(m *nats.Msg) {
		b, _ := json.Marshal(subjects.FileInfo{Name: "x", Owner: fileserver.AdminUser})
		if err := m.Respond(b); err != nil {
			t.Error(err)
		}
	}

	t.Run("slow, with keepalives", func(t *testing.T) {
		done := make(chan error, 1)
		go func() { _, err := c.Stat(ctx, "x"); done <- err }()
		m := <-requests
		for range 10 { // a second of work, four times the timeout
			time.Sleep(100 * time.Millisecond)
			k := nats.NewMsg(m.Reply)
			k.Header.Set(subjects.HeaderStatus, "100")
			if err := svc.PublishMsg(k); err != nil {
				t.Fatal(err)
			}
		}
		answer(m)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(requests) != 0 {
			t.Fatalf("a server sending keepalives was asked %d more times", len(requests))
		}
	})

	t.Run("silent", func(t *testing.T) {
		done := make(chan error, 1)
		go func() { _, err := c.Stat(ctx, "x"); done <- err }()
		first := <-requests
		var again *nats.Msg
		select {
		case again = <-requests:
		case <-time.After(5 * time.Second):
			t.Fatal("a silent server's request was not sent again")
		}
		if again.Reply != first.Reply {
			t.Fatalf("sent again with reply %s, first %s", again.Reply, first.Reply)
		}
		answer(first) // the first attempt's answer is as good
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestRequestsOfADeadServerAreSentAgainAtOnce: when the file server holding
// a request disconnects, its broker says so (subjects.ServerGone) and the
// client sends the request again without waiting for the silence to show.
func TestRequestsOfADeadServerAreSentAgainAtOnce(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const silence = 20 * time.Second // longer than this test may take
	c, err := client.Dial(ctx, []string{sys.url}, client.Credentials{User: fileserver.AdminUser, Password: adminPassword}, client.WithRequestTimeout(silence))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	sys.servers[0].Stop()

	// The holder: takes the request and dies with it.
	holder, err := nats.Connect(sys.url, nats.UserInfo(subjects.FrontUser, servicePassword), nats.Name(subjects.ConnNamePrimary), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	taken := make(chan *nats.Msg, 1)
	if _, err := holder.ChanQueueSubscribe(subjects.Stat, subjects.QueueGroup, taken); err != nil {
		t.Fatal(err)
	}
	if err := holder.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { _, err := c.Stat(ctx, "x"); done <- err }()
	<-taken

	// The survivor subscribes before the holder goes, so the second
	// attempt finds it.
	survivor, err := nats.Connect(sys.url, nats.UserInfo(subjects.FrontUser, servicePassword), nats.Name(subjects.ConnNameBackup), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer survivor.Close()
	if _, err := survivor.QueueSubscribe(subjects.Stat, subjects.QueueGroup, func(m *nats.Msg) {
		b, _ := json.Marshal(subjects.FileInfo{Name: "x"})
		_ = m.Respond(b)
	}); err != nil {
		t.Fatal(err)
	}
	if err := survivor.Flush(); err != nil {
		t.Fatal(err)
	}
	holder.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= silence {
		t.Fatalf("the request waited %v: the departure was not noticed", took)
	}
}

// gatedReader gives r's bytes, holding at the gate offset until opened.
type gatedReader struct {
	r      io.Reader
	n, at  int
	gated  chan struct{} // closed once the reader waits at the gate
	open   chan struct{}
	waited bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.n == g.at && !g.waited {
		g.waited = true
		close(g.gated)
		<-g.open
	}
	if g.n < g.at {
		p = p[:min(len(p), g.at-g.n)]
	}
	n, err := g.r.Read(p)
	g.n += n
	return n, err
}

// recordLog keeps the messages logged to it.
type recordLog struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (r *recordLog) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *recordLog) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recordLog) WithGroup(string) slog.Handler      { return r }

func (r *recordLog) saw(part string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.msgs, func(m string) bool { return strings.Contains(m, part) })
}

// TestDownloadOfInterleavedChunks gets a file whose chunks are not
// contiguous in the stream (another file was stored amid them): the
// download asks for the next batch ahead, guessing its cursor from
// contiguous chunks; the guess is wrong here, and the file must still come
// back whole.
func TestDownloadOfInterleavedChunks(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	c := sys.login(t, fileserver.AdminUser, adminPassword)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data := randomBytes(40 * subjects.ChunkSize)
	// Held at chunk 12, more than a window (8) in: chunks 3 to 12 are
	// stored by then, within the first download batch (DownloadBatch chunks).
	g := &gatedReader{r: bytes.NewReader(data), at: 12 * subjects.ChunkSize, gated: make(chan struct{}), open: make(chan struct{})}
	put := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, "interleaved.bin", g, int64(len(data)))
		put <- err
	}()
	select {
	case <-g.gated:
	case err := <-put:
		t.Fatalf("put ended before its gate: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the chunks sent before the gate are stored
	if _, err := c.Put(ctx, "amid.bin", bytes.NewReader([]byte("amid")), 4); err != nil {
		t.Fatal(err)
	}
	close(g.open)
	if err := <-put; err != nil {
		t.Fatal(err)
	}

	rec := &recordLog{}
	reader, err := client.Dial(ctx, []string{sys.url}, client.Credentials{User: fileserver.AdminUser, Password: adminPassword}, client.WithLogger(slog.New(rec)))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, err := reader.Login(ctx); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := reader.Get(ctx, "interleaved.bin", &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("got %d bytes, not the file's %d", got.Len(), len(data))
	}
	if !rec.saw("wrong cursor") {
		t.Fatalf("no batch was asked ahead with a wrong cursor (the chunks did not interleave?); logged: %q", rec.msgs)
	}
}

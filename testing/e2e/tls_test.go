package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

func tlsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestTLS runs the core scenario on a three-broker cluster where every
// connection uses TLS: clients and file servers to the brokers, and the
// routes between brokers. It ends with the primary killed in the middle of
// an upload, which completes all the same.
func TestTLS(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"), ftfstest.TLS())
	plainURLs := strings.ReplaceAll(sys.URLs(), "tls://", "nats://")

	t.Run("connections without the CA are refused", func(t *testing.T) {
		if nc, err := nats.Connect(plainURLs, nats.UserInfo(subjects.ServiceUser, sys.ServicePassword), nats.Timeout(3*time.Second)); err == nil {
			nc.Close()
			t.Fatal("a service connection that does not trust the CA was accepted")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c, err := client.Dial(ctx, strings.Split(plainURLs, ","), client.Credentials{User: "admin", Password: sys.AdminPassword}); !errors.Is(err, client.ErrUnavailable) {
			if err == nil {
				c.Close()
			}
			t.Fatalf("client without the CA: %v, want ErrUnavailable", err)
		}
	})

	admin := sys.Login(t, "admin")
	sys.AddUser(t, "alice")
	alice := sys.Login(t, "alice")
	if _, err := alice.Conn().TLSConnectionState(); err != nil {
		t.Fatalf("the client connection is not TLS: %v", err)
	}

	t.Run("the client library puts, gets, lists and removes", func(t *testing.T) {
		sizes := map[string]int{"zero": 0, "one": 1, "chunk+1": subjects.ChunkSize + 1, "3MiB": 3 << 20}
		stored := map[string][]byte{}
		for name, n := range sizes {
			stored["tls/"+name] = sys.PutRandom(t, alice, "tls/"+name, n)
		}
		for name, want := range stored {
			ftfstest.SameBytes(t, want, ftfstest.GetBytes(t, alice, name))
		}
		files, err := admin.List(tlsCtx(t), "tls/")
		if err != nil || len(files) != len(sizes) {
			t.Fatalf("list: %v, %d files, want %d", err, len(files), len(sizes))
		}
		for _, f := range files {
			if f.Owner != "alice" || f.Digest != ftfstest.Digest(stored[f.Name]) {
				t.Fatalf("listed %+v", f)
			}
		}
		for name := range stored {
			if err := alice.Delete(tlsCtx(t), name); err != nil {
				t.Fatalf("rm %s: %v", name, err)
			}
		}
		if files, err := admin.List(tlsCtx(t), "tls/"); err != nil || len(files) != 0 {
			t.Fatalf("list after rm: %v, %d files", err, len(files))
		}
	})

	cli := sys.CLI(t)
	dir := t.TempDir()
	mustRun := func(t *testing.T, args ...string) string {
		t.Helper()
		return mustRunEnv(t, cli, []string{"FTFS_PASSWORD=" + sys.AdminPassword}, args...)
	}
	cliRoundTrip := func(t *testing.T, name string, n int) {
		t.Helper()
		content := ftfstest.RandomBytes(n)
		local := filepath.Join(dir, filepath.Base(name))
		if err := os.WriteFile(local, content, 0o644); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "put", local, name)
		var fi subjects.FileInfo
		if err := json.Unmarshal([]byte(mustRun(t, "stat", name, "--json")), &fi); err != nil || fi.Size != int64(n) || fi.Digest != ftfstest.Digest(content) {
			t.Fatalf("stat %s: %v %+v", name, err, fi)
		}
		back := local + ".back"
		mustRun(t, "get", name, back)
		got, err := os.ReadFile(back)
		if err != nil {
			t.Fatal(err)
		}
		ftfstest.SameBytes(t, content, got)
	}

	t.Run("the CLI logs in, puts, lists, gets and removes", func(t *testing.T) {
		mustRun(t, "login", "admin") // the CA comes from FTFS_TLS_CA
		cliRoundTrip(t, "cli-tls/small.txt", 100)
		cliRoundTrip(t, "cli-tls/chunks.bin", 2*subjects.ChunkSize+5)
		var files []subjects.FileInfo
		if err := json.Unmarshal([]byte(mustRun(t, "ls", "cli-tls/", "--json")), &files); err != nil || len(files) != 2 {
			t.Fatalf("ls --json: %v %+v", err, files)
		}
		mustRun(t, "rm", "cli-tls/small.txt")
		mustRun(t, "rm", "cli-tls/chunks.bin")
		if err := json.Unmarshal([]byte(mustRun(t, "ls", "cli-tls/", "--json")), &files); err != nil || len(files) != 0 {
			t.Fatalf("ls after rm: %v %+v", err, files)
		}
		// The session remembers the CA of the login.
		mustRunEnv(t, cli, []string{subjects.EnvTLSCA + "="}, "ls")
		// Without the CA the CLI cannot reach the brokers.
		_, stderr, code := sys.CLI(t).Run(t, nil, []string{subjects.EnvTLSCA + "=", "NATS_URL=" + plainURLs, "FTFS_PASSWORD=" + sys.AdminPassword}, "login", "admin")
		if code == 0 {
			t.Fatal("login without the CA succeeded")
		}
		t.Logf("login without the CA: %s", strings.TrimSpace(stderr))
	})

	t.Run("a put survives the primary killed mid-way", func(t *testing.T) {
		data := ftfstest.RandomBytes(16 << 20)
		// The upload stops reading a quarter of the way in until the
		// primary is dead, so that the kill lands mid-upload.
		r := &gatedReader{r: bytes.NewReader(data), left: len(data) / 4, reached: make(chan struct{}), open: make(chan struct{})}
		result := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := alice.Put(ctx, "tls/big.bin", r, int64(len(data)))
			result <- err
		}()
		select {
		case <-r.reached:
		case err := <-result:
			t.Fatalf("the upload ended (%v) before it was a quarter done", err)
		}
		sys.Kill(t, "primary")
		close(r.open)
		if err := <-result; err != nil {
			t.Fatalf("put with the primary killed: %v", err)
		}
		ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, alice, "tls/big.bin"))

		// Only the backup is left: both the library and the CLI still put.
		ftfstest.SameBytes(t, sys.PutRandom(t, alice, "tls/after.bin", subjects.ChunkSize+3), ftfstest.GetBytes(t, alice, "tls/after.bin"))
		cliRoundTrip(t, "cli-tls/after.txt", 1000)
	})
}

func mustRunEnv(t *testing.T, cli *ftfstest.CLI, env []string, args ...string) string {
	t.Helper()
	out, stderr, code := cli.Run(t, nil, env, args...)
	if code != 0 {
		t.Fatalf("ftfs %v: exit %d: %s", args, code, stderr)
	}
	return out
}

// gatedReader reads left bytes of r, then closes reached and waits until
// open is closed before it reads on.
type gatedReader struct {
	r       io.Reader
	left    int
	reached chan struct{}
	told    bool
	open    chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		if !g.told {
			close(g.reached)
			g.told = true
		}
		<-g.open
		return g.r.Read(p)
	}
	if len(p) > g.left {
		p = p[:g.left]
	}
	n, err := g.r.Read(p)
	g.left -= n
	return n, err
}

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
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// ctxT is a context for one step of a test: two minutes.
func ctxT(t *testing.T) context.Context { return ctxFor(t, 2*time.Minute) }

// ctxFor is a context that ends after d or with the test.
func ctxFor(t *testing.T, d time.Duration) context.Context { return ftfstest.Context(t, d) }

// TestCore walks what a team does with ftfs on one running system.
func TestCore(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	admin := sys.Login(t, "admin")
	sys.AddUser(t, "alice")
	alice := sys.Login(t, "alice")
	if _, err := alice.Conn().TLSConnectionState(); (err == nil) != (os.Getenv(ftfstest.EnvTLS) == "1") {
		t.Fatalf("%s=%q, yet the client's connection has TLS state error %v", ftfstest.EnvTLS, os.Getenv(ftfstest.EnvTLS), err)
	}

	t.Run("login with a wrong password is refused", func(t *testing.T) {
		_, err := sys.Dial(t, "alice", "not-her-password")
		if !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		_, err = sys.Dial(t, "nobody", "whatever-password")
		if !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("unknown user: err = %v, want ErrUnauthorized", err)
		}
	})

	sizes := map[string]int{
		"zero": 0, "one": 1, "chunk-1": subjects.ChunkSize - 1, "chunk": subjects.ChunkSize,
		"chunk+1": subjects.ChunkSize + 1, "64MiB": 64 << 20,
	}
	stored := map[string][]byte{}
	t.Run("round trips of every size", func(t *testing.T) {
		for name, n := range sizes {
			want := sys.PutRandom(t, alice, "sizes/"+name, n)
			stored["sizes/"+name] = want
			got := ftfstest.GetBytes(t, alice, "sizes/"+name)
			ftfstest.SameBytes(t, want, got)
			fi, err := alice.Stat(ctxT(t), "sizes/"+name)
			if err != nil || fi.Size != int64(n) || fi.Digest != ftfstest.Digest(want) || fi.Owner != "alice" {
				t.Fatalf("stat %s: %v %+v", name, err, fi)
			}
		}
		files, err := admin.List(ctxT(t), "sizes/")
		if err != nil || len(files) != len(sizes) {
			t.Fatalf("list: %v, %d files", err, len(files))
		}
	})

	t.Run("every stored file is a plain object store object", func(t *testing.T) {
		obs := sys.ObjectStore(t)
		for name, want := range stored {
			info, err := obs.GetInfo(ctxT(t), name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if info.Digest != ftfstest.Digest(want) || int(info.Size) != len(want) {
				t.Fatalf("%s: object info %s %d", name, info.Digest, info.Size)
			}
			got, err := obs.GetBytes(ctxT(t), name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ftfstest.SameBytes(t, want, got)
		}
	})

	t.Run("the backup's replica dir holds identical copies", func(t *testing.T) {
		for name, want := range stored {
			p := filepath.Join(sys.ReplicaDir, filepath.FromSlash(name))
			ftfstest.Eventually(t, 30*time.Second, "replica of "+name, func() bool {
				got, err := os.ReadFile(p)
				return err == nil && bytes.Equal(got, want)
			})
		}
	})

	t.Run("only the owner or an admin changes a file", func(t *testing.T) {
		sys.PutRandom(t, admin, "admins/plan.txt", 100)
		if err := alice.Delete(ctxT(t), "admins/plan.txt"); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("alice deletes admin's file: %v", err)
		}
		if _, err := alice.Put(ctxT(t), "admins/plan.txt", strings.NewReader("mine"), 4); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("alice overwrites admin's file: %v", err)
		}
		if _, err := alice.Rename(ctxT(t), "admins/plan.txt", "x", false); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("alice renames admin's file: %v", err)
		}
		if err := admin.Delete(ctxT(t), "sizes/one"); err != nil {
			t.Fatalf("admin deletes alice's file: %v", err)
		}
		delete(stored, "sizes/one")
	})

	t.Run("the replica follows a delete", func(t *testing.T) {
		p := filepath.Join(sys.ReplicaDir, "sizes", "one")
		ftfstest.Eventually(t, 30*time.Second, "replica drops sizes/one", func() bool {
			_, err := os.Stat(p)
			return errors.Is(err, os.ErrNotExist)
		})
	})

	t.Run("a download whose digest does not match fails and leaves nothing", func(t *testing.T) {
		// Forge a meta message that promises other content than stored.
		js, err := jetstream.New(sys.ServiceConn(t))
		if err != nil {
			t.Fatal(err)
		}
		info, err := sys.ObjectStore(t).GetInfo(ctxT(t), "sizes/chunk+1")
		if err != nil {
			t.Fatal(err)
		}
		info.Name = "forged.bin"
		info.Digest = ftfstest.Digest([]byte("something else"))
		b, _ := json.Marshal(info)
		m := nats.NewMsg(subjects.ObjectMeta(subjects.FilesBucket, "forged.bin"))
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		m.Data = b
		if _, err := js.PublishMsg(ctxT(t), m); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Get(ctxT(t), "forged.bin", io.Discard); !errors.Is(err, client.ErrIntegrity) {
			t.Fatalf("client get: %v, want ErrIntegrity", err)
		}
		cli := sys.AdminCLI(t)
		dir := t.TempDir()
		_, stderr, code := cli.Run(t, nil, nil, "get", "forged.bin", dir+"/")
		if code == 0 || !strings.Contains(stderr, "integrity") {
			t.Fatalf("CLI get of a forged file: exit %d, %q", code, stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("a failed download left %v", entries)
		}
	})

	t.Run("the CLI lists, stats, renames, downloads and deletes", func(t *testing.T) {
		cli := sys.CLI(t)
		dir := t.TempDir()
		_, stderr, code := cli.Run(t, nil, []string{"FTFS_PASSWORD=wrong-password"}, "login", "admin")
		if code == 0 || !strings.Contains(stderr, "ftfs: ") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Fatalf("bad login: code %d, stderr %q", code, stderr)
		}
		mustRun := func(args ...string) string {
			t.Helper()
			out, stderr, code := cli.Run(t, nil, []string{"FTFS_PASSWORD=" + sys.AdminPassword}, args...)
			if code != 0 {
				t.Fatalf("ftfs %v: exit %d: %s", args, code, stderr)
			}
			return out
		}
		mustRun("login", "admin")
		local := filepath.Join(dir, "notes.txt")
		content := ftfstest.RandomBytes(3*subjects.ChunkSize + 11)
		if err := os.WriteFile(local, content, 0o644); err != nil {
			t.Fatal(err)
		}
		mustRun("put", local, "cli/notes.txt")
		var files []subjects.FileInfo
		if err := json.Unmarshal([]byte(mustRun("ls", "cli/", "--json")), &files); err != nil || len(files) != 1 || files[0].Name != "cli/notes.txt" {
			t.Fatalf("ls --json: %v %+v", err, files)
		}
		var fi subjects.FileInfo
		if err := json.Unmarshal([]byte(mustRun("stat", "cli/notes.txt", "--json")), &fi); err != nil || fi.Size != int64(len(content)) || fi.Digest != ftfstest.Digest(content) {
			t.Fatalf("stat --json: %v %+v", err, fi)
		}
		mustRun("mv", "cli/notes.txt", "cli/renamed.txt")
		out := filepath.Join(dir, "back.txt")
		mustRun("get", "cli/renamed.txt", out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		ftfstest.SameBytes(t, content, got)
		var viaStdout bytes.Buffer
		o := mustRun("get", "cli/renamed.txt", "-")
		viaStdout.WriteString(o)
		ftfstest.SameBytes(t, content, viaStdout.Bytes())
		mustRun("rm", "cli/renamed.txt")
		if err := json.Unmarshal([]byte(mustRun("ls", "cli/", "--json")), &files); err != nil || len(files) != 0 {
			t.Fatalf("ls after rm: %v %+v", err, files)
		}
		_, stderr, code = cli.Run(t, nil, nil, "get", "cli/renamed.txt", filepath.Join(dir, "x"))
		if code == 0 || !strings.Contains(stderr, "no file") {
			t.Fatalf("get of a deleted file: code %d, stderr %q", code, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("a failed get left a local file")
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				t.Fatalf("a temporary file was left: %s", e.Name())
			}
		}
		mustRun("status")
		mustRun("logout")
		if _, stderr, code := cli.Run(t, nil, nil, "ls"); code == 0 || !strings.Contains(stderr, "ftfs login") {
			t.Fatalf("ls after logout: %d %q", code, stderr)
		}
	})

	t.Run("get -r downloads a tree and never writes outside its directory", func(t *testing.T) {
		cli := sys.CLI(t)
		env := []string{"FTFS_PASSWORD=" + sys.AdminPassword}
		mustRun := func(args ...string) {
			t.Helper()
			if _, stderr, code := cli.Run(t, nil, env, args...); code != 0 {
				t.Fatalf("ftfs %v: exit %d: %s", args, code, stderr)
			}
		}
		mustRun("login", "admin")
		src := t.TempDir()
		want := map[string][]byte{}
		for _, name := range []string{"tree/2026/a.txt", "tree/2026/sub/b.txt", "tree/other.txt"} {
			want[name] = ftfstest.RandomBytes(subjects.ChunkSize + len(name))
			local := filepath.Join(src, strings.ReplaceAll(name, "/", "_"))
			if err := os.WriteFile(local, want[name], 0o644); err != nil {
				t.Fatal(err)
			}
			mustRun("put", local, name)
		}
		out := filepath.Join(t.TempDir(), "out")
		mustRun("get", "-r", "tree/2026", out)
		for name, local := range map[string]string{"tree/2026/a.txt": "2026/a.txt", "tree/2026/sub/b.txt": "2026/sub/b.txt"} {
			got, err := os.ReadFile(filepath.Join(out, local))
			if err != nil {
				t.Fatal(err)
			}
			ftfstest.SameBytes(t, want[name], got)
		}
		if _, err := os.Stat(filepath.Join(out, "other.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("get -r tree/2026 fetched a file outside the prefix: %v", err)
		}

		// A symbolic link in the local directory leading out of it: the
		// download refuses to follow it and nothing lands outside.
		outside, trapped := t.TempDir(), t.TempDir()
		if err := os.Symlink(outside, filepath.Join(trapped, "2026")); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := cli.Run(t, nil, env, "get", "-r", "tree/2026", trapped)
		if code == 0 {
			t.Fatalf("get -r through a symlink leading out of the directory succeeded: %s", stderr)
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Fatalf("get -r wrote outside its directory: %v", entries)
		}
	})
}

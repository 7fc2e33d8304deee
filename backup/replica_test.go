package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/broker"
	"github.com/ftfs/ftfs/subjects"
)

const pw = "replica-test-secret"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func setup(t *testing.T) (jetstream.JetStream, jetstream.ObjectStore) {
	t.Helper()
	b, err := broker.Start(broker.Config{Port: -1, HTTPPort: -1, DataDir: t.TempDir(), ServicePassword: pw, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(subjects.ServiceUser, pw), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	obs, err := js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: subjects.FilesBucket})
	if err != nil {
		t.Fatal(err)
	}
	return js, obs
}

// runReplica runs a replica of dir until the returned stop is called.
func runReplica(t *testing.T, js jetstream.JetStream, dir string) (stop func()) {
	t.Helper()
	r, err := NewReplica(js, subjects.FilesBucket, dir, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func put(t *testing.T, obs jetstream.ObjectStore, name string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if _, err := obs.PutBytes(context.Background(), name, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func holds(dir, name string, want []byte) func() bool {
	return func() bool {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		return err == nil && bytes.Equal(got, want)
	}
}

func gone(dir, name string) func() bool {
	return func() bool {
		_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		return os.IsNotExist(err)
	}
}

func TestReplicaFollowsTheBucket(t *testing.T) {
	js, obs := setup(t)
	dir := t.TempDir()
	files := map[string][]byte{
		"empty":     put(t, obs, "empty", 0),
		"a/b/c.txt": put(t, obs, "a/b/c.txt", 1000),
		"big.bin":   put(t, obs, "big.bin", 5<<20+7),
	}
	runReplica(t, js, dir)
	for name, want := range files {
		eventually(t, "copy of "+name, holds(dir, name, want))
	}
	newer := put(t, obs, "a/b/c.txt", 2000)
	eventually(t, "overwrite followed", holds(dir, "a/b/c.txt", newer))
	if err := obs.Delete(context.Background(), "a/b/c.txt"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delete followed", gone(dir, "a/b/c.txt"))
	eventually(t, "empty dirs pruned", gone(dir, "a"))
}

func TestReplicaCatchesUpAfterDowntime(t *testing.T) {
	js, obs := setup(t)
	dir := t.TempDir()
	keep := put(t, obs, "keep.txt", 100)
	doomed := put(t, obs, "doomed.txt", 100)
	stop := runReplica(t, js, dir)
	eventually(t, "first sync", holds(dir, "doomed.txt", doomed))
	stop()

	// While the backup is down: a delete, an addition, and local damage.
	if err := obs.Delete(context.Background(), "doomed.txt"); err != nil {
		t.Fatal(err)
	}
	added := put(t, obs, "added.txt", 3000)
	if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stray.txt"), []byte("not in the bucket"), 0o644); err != nil {
		t.Fatal(err)
	}

	runReplica(t, js, dir)
	eventually(t, "missed delete applied", gone(dir, "doomed.txt"))
	eventually(t, "missed addition copied", holds(dir, "added.txt", added))
	eventually(t, "damaged copy repaired", holds(dir, "keep.txt", keep))
	eventually(t, "stray file removed", gone(dir, "stray.txt"))
}

func TestReplicaPathsStayInsideItsDir(t *testing.T) {
	r := &Replica{dir: "/srv/replica"}
	for _, name := range []string{"../evil", "/etc/passwd", "a/../../b", "a//b", ".ftfs-replica.json", "x/.ftfs-tmp-1"} {
		if p, err := r.localPath(name); err == nil {
			t.Errorf("localPath(%q) = %q, want refusal", name, p)
		}
	}
	if p, err := r.localPath("a/b.txt"); err != nil || p != "/srv/replica/a/b.txt" {
		t.Errorf("localPath(a/b.txt) = %q, %v", p, err)
	}
}

func TestRestoreLoadsAReplicaIntoAnEmptyBucket(t *testing.T) {
	js, obs := setup(t)
	dir := t.TempDir()
	files := map[string][]byte{}
	for name, size := range map[string]int{"a.txt": 10, "d/e/f.bin": 3<<20 + 1, "empty": 0} {
		b := make([]byte, size)
		rand.Read(b)
		if _, err := obs.Put(context.Background(), jetstream.ObjectMeta{Name: name, Metadata: map[string]string{subjects.MetaOwner: "alice"}}, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	stop := runReplica(t, js, dir)
	for name, want := range files {
		eventually(t, "copy of "+name, holds(dir, name, want))
	}
	stop()
	// A damaged copy is left out, not restored.
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("damaged!!!"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Total loss: a new broker with an empty JetStream.
	js2, obs2 := setup(t)
	ctx := context.Background()
	url := js2.Conn().ConnectedUrl()
	rep, err := Restore(ctx, RestoreConfig{Servers: []string{url}, ServicePassword: pw, Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Restored != 2 || len(rep.Skipped) != 1 {
		t.Fatalf("report %+v", rep)
	}
	for _, name := range []string{"d/e/f.bin", "empty"} {
		info, err := obs2.GetInfo(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := obs2.GetBytes(ctx, name)
		if err != nil || !bytes.Equal(got, files[name]) || info.Metadata[subjects.MetaOwner] != "alice" {
			t.Fatalf("%s: %v, owner %q", name, err, info.Metadata[subjects.MetaOwner])
		}
	}
	if _, err := obs2.GetInfo(ctx, "a.txt"); err == nil {
		t.Fatal("a damaged copy was restored")
	}
	// Run again (a restore that stopped part way), it leaves what is there.
	rep, err = Restore(ctx, RestoreConfig{Servers: []string{url}, ServicePassword: pw, Dir: dir, Logger: quiet()})
	if err != nil || rep.Restored != 0 || rep.Present != 2 {
		t.Fatalf("restore run again: %v, report %+v", err, rep)
	}
	// Restoring into a bucket that holds a file the replica does not is
	// refused.
	if _, err := obs2.PutBytes(ctx, "stranger", []byte("not from the replica")); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(ctx, RestoreConfig{Servers: []string{url}, ServicePassword: pw, Dir: dir, Logger: quiet()}); err == nil {
		t.Fatal("restore into a bucket holding a file the replica does not")
	}
}

// TestManifestChangesSurviveACrash: changes recorded since the manifest was
// last written whole come back from the journal, and a torn last line (the
// crash itself) is ignored.
func TestManifestChangesSurviveACrash(t *testing.T) {
	dir := t.TempDir()
	r, err := NewReplica(nil, subjects.FilesBucket, dir, quiet())
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.record("kept", &entry{Digest: "SHA-256=a", Size: 1, Owner: "alice"})
	r.record("gone", &entry{Digest: "SHA-256=b", Size: 2, Owner: "bob"})
	r.mu.Unlock()
	r.saveManifest(true)
	r.mu.Lock()
	r.record("late", &entry{Digest: "SHA-256=c", Size: 3, Owner: "carol"})
	r.record("gone", nil)
	r.mu.Unlock()
	// Killed here: the manifest was not written again. Tear a last line.
	if _, err := r.journal.WriteString(`{"name":"torn","entry":{"dig`); err != nil {
		t.Fatal(err)
	}
	r.journal.Close()

	again, err := NewReplica(nil, subjects.FilesBucket, dir, quiet())
	if err != nil {
		t.Fatal(err)
	}
	got := again.manifest
	if len(got) != 2 || got["kept"].Owner != "alice" || got["late"].Owner != "carol" {
		t.Fatalf("manifest after the crash: %+v", got)
	}
	// A change after the torn line is kept too.
	again.mu.Lock()
	again.record("after", &entry{Digest: "SHA-256=d", Size: 4, Owner: "dave"})
	again.mu.Unlock()
	again.journal.Close()
	if m, err := loadManifest(dir); err != nil || m["after"].Owner != "dave" || len(m) != 3 {
		t.Fatalf("after another change: %v %+v", err, m)
	}
}

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// mtimeSlack is how far a restored file's modification time may be from
// the one it had.
const mtimeSlack = time.Second

// TestRestoreAfterTotalLoss loses every byte of JetStream data (the broker's
// data dir is gone) and brings the files back from the backup's replica dir
// with `ftfs restore`: same names, bytes, digests, owners and modification
// times.
func TestRestoreAfterTotalLoss(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	sys.AddUser(t, "alice")
	alice := sys.Login(t, "alice")
	admin := sys.Login(t, "admin")
	want := map[string][]byte{
		"alice/notes.txt":    sys.PutRandom(t, alice, "alice/notes.txt", 1000),
		"alice/big.bin":      sys.PutRandom(t, alice, "alice/big.bin", 3*subjects.ChunkSize+17),
		"shared/empty":       sys.PutRandom(t, admin, "shared/empty", 0),
		"shared/report.pdf":  sys.PutRandom(t, admin, "shared/report.pdf", subjects.ChunkSize),
		"deep/a/b/c/d/e.txt": sys.PutRandom(t, alice, "deep/a/b/c/d/e.txt", 10),
	}
	owner := map[string]string{"alice/notes.txt": "alice", "alice/big.bin": "alice", "shared/empty": "admin", "shared/report.pdf": "admin", "deep/a/b/c/d/e.txt": "alice"}
	sys.ReplicaMatches(t)
	before, err := admin.List(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	modified := map[string]time.Time{}
	var latest time.Time
	for _, f := range before {
		modified[f.Name] = f.Modified
		if f.Modified.After(latest) {
			latest = f.Modified
		}
	}
	// Restore runs well after the last put, so that a restored file with
	// the restore's time is told from one with its own.
	time.Sleep(time.Until(latest.Add(3 * mtimeSlack)))

	for _, p := range []string{"primary", "backup", "broker1"} {
		sys.Kill(t, p)
	}
	if err := os.RemoveAll(filepath.Join(sys.Dir, "broker1")); err != nil {
		t.Fatal(err)
	}
	sys.Restart(t, "broker1")
	out, stderr, code := sys.CLI(t).Run(t, nil, []string{subjects.EnvServicePassword + "=" + sys.ServicePassword},
		"restore", "--from", sys.ReplicaDir, "--server", sys.URLs())
	if code != 0 || !strings.Contains(out, "restored 5 files") {
		t.Fatalf("ftfs restore: exit %d: %s%s", code, out, stderr)
	}
	sys.Restart(t, "primary")
	sys.Restart(t, "backup")

	// Users lived in JetStream too: the first admin is made again, the
	// others are added again by an admin.
	admin = sys.Login(t, "admin")
	files, err := admin.List(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("%d files after restore, want %d: %+v", len(files), len(want), files)
	}
	for _, f := range files {
		data, ok := want[f.Name]
		if !ok {
			t.Fatalf("restored %s, which was never stored", f.Name)
		}
		if f.Owner != owner[f.Name] || f.Digest != ftfstest.Digest(data) {
			t.Errorf("%s: owner %s digest %s, want %s %s", f.Name, f.Owner, f.Digest, owner[f.Name], ftfstest.Digest(data))
		}
		// The replica records when the file's meta was stored, a write's
		// round trip after the time its server gave it.
		if d := f.Modified.Sub(modified[f.Name]).Abs(); d > mtimeSlack {
			t.Errorf("%s: modified %s after restore, %s before (%s apart)", f.Name, f.Modified, modified[f.Name], d)
		}
		ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, admin, f.Name))
	}
	sys.ReplicaMatches(t)
}

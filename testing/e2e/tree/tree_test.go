// Package tree_test runs `ftfs put -r` end to end: the real CLI binary
// against a broker, primary and backup run as processes of their own
// (testing/ftfstest), with a file server killed in the middle of a tree.
// It is a package of its own so that testing/e2e keeps within go test's
// default timeout.
package tree_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// metaLog records every meta message the files bucket stores, as a
// JetStream consumer started before the tree receives them (each as it is
// stored, before the rollup of a later one removes it): which versions
// (NUIDs) were stored for each name. A file stored twice has two
// versions. A write JetStream refuses (a copy of a request already done,
// answered duplicate) is not stored, and not counted: a core NATS
// subscriber would see it.
type metaLog struct {
	mu       sync.Mutex
	versions map[string]map[string]bool // name -> NUIDs
	msgs     int
}

func watchMetas(t *testing.T, sys *ftfstest.System) *metaLog {
	t.Helper()
	l := &metaLog{versions: map[string]map[string]bool{}}
	js, err := jetstream.New(sys.OperatorConn(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, subjects.ObjectStream(subjects.FilesBucket), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjects.ObjectMetas(subjects.FilesBucket)},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var oi jetstream.ObjectInfo
		if err := json.Unmarshal(m.Data(), &oi); err != nil {
			t.Errorf("undecodable meta on %s: %v", m.Subject(), err)
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.msgs++
		if l.versions[oi.Name] == nil {
			l.versions[oi.Name] = map[string]bool{}
		}
		l.versions[oi.Name][oi.NUID] = true
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return l
}

func (l *metaLog) names() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.versions)
}

// settle waits until the consumer has received nothing new for half a
// second: every meta stored by then has arrived.
func (l *metaLog) settle(t *testing.T) {
	t.Helper()
	last, quiet := l.count(), time.Now()
	ftfstest.Eventually(t, 20*time.Second, "meta messages to stop arriving", func() bool {
		if n := l.count(); n != last {
			last, quiet = n, time.Now()
		}
		return time.Since(quiet) >= 500*time.Millisecond
	})
}

func (l *metaLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msgs
}

// makeTree writes n small files (1 B to 8 KiB, in nested directories),
// two large ones (uploads of several chunks), an empty one and a symbolic
// link below a new directory named dirName, and returns the directory and
// each file's content by its path below it (slashes).
func makeTree(t *testing.T, dirName string, n int) (string, map[string][]byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), dirName)
	files := map[string][]byte{
		"big/one.bin": ftfstest.RandomBytes(3*subjects.ChunkSize + 11),
		"big/two.bin": ftfstest.RandomBytes(5 * subjects.ChunkSize),
		"empty.txt":   {},
	}
	for i := range n {
		files[fmt.Sprintf("d%d/s%d/f%03d.dat", i%7, i%3, i)] = ftfstest.RandomBytes(1 + (i*997)%(8<<10))
	}
	ftfstest.WriteFiles(t, dir, files)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// TestPutTreeSurvivesKillOfAServer puts a tree of a few hundred files with
// `ftfs put -r`, kills (SIGKILL) the primary a third of the way in, and
// checks that the command succeeds, that every file arrived once (one
// version per name among every meta message written) with the right
// bytes (`ftfs get -r` back), and that `put -r --update` then sends
// nothing.
func TestPutTreeSurvivesKillOfAServer(t *testing.T) {
	t.Parallel()
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	pw := sys.AddUser(t, "alice")
	cli := sys.CLI(t)
	if _, stderr, code := cli.Run(t, nil, []string{"FTFS_PASSWORD=" + pw}, "login", "alice"); code != 0 {
		t.Fatalf("ftfs login: exit %d: %s", code, stderr)
	}
	dir, files := makeTree(t, "photos", 400)
	metas := watchMetas(t, sys)

	var out bytes.Buffer
	done := make(chan ftfstest.Result, 1)
	go func() { done <- cli.Exec(t, nil, &out, nil, "put", "-r", "-j", "8", dir) }()
	var res ftfstest.Result
	killedAt := -1
	for res.Code == 0 && killedAt < 0 {
		select {
		case res = <-done:
			t.Fatalf("put -r ended (exit %d: %s) before a third of its files had arrived (%d)", res.Code, res.Stderr, metas.names())
		case <-time.After(2 * time.Millisecond):
		}
		if n := metas.names(); n >= len(files)/3 {
			sys.Kill(t, "primary")
			killedAt = metas.names()
		}
	}
	res = <-done
	if res.Code != 0 {
		t.Fatalf("put -r with the primary killed: exit %d: %s", res.Code, res.Stderr)
	}
	if killedAt >= len(files) {
		t.Fatalf("the primary was killed after every file had arrived (%d): not mid-tree", killedAt)
	}
	t.Logf("primary killed with %d of %d files stored; put -r said: %s", killedAt, len(files), strings.TrimSpace(out.String()))
	if !strings.Contains(out.String(), fmt.Sprintf("uploaded %d files", len(files))) || !strings.Contains(out.String(), "1 skipped") {
		t.Fatalf("put -r summary %q, want %d files uploaded and the link skipped", out.String(), len(files))
	}
	if !strings.Contains(res.Stderr, "skipped "+filepath.Join(dir, "link")+": symbolic link") {
		t.Fatalf("put -r did not name the symbolic link it skipped: %s", res.Stderr)
	}

	// Every name was stored once: one version among all meta messages
	// written, and it is the one stored.
	obs := sys.ObjectStore(t)
	metas.settle(t)
	if n := metas.names(); n != len(files) {
		t.Fatalf("meta messages name %d files, want %d", n, len(files))
	}
	metas.mu.Lock()
	for p := range files {
		name := "photos/" + p
		vs := metas.versions[name]
		if len(vs) != 1 {
			t.Errorf("%s was stored %d times (versions %v)", name, len(vs), vs)
			continue
		}
		info, err := obs.GetInfo(t.Context(), name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !vs[info.NUID] {
			t.Errorf("%s: stored version %s is not the one written (%v)", name, info.NUID, vs)
		}
	}
	metas.mu.Unlock()

	// The bytes, through the CLI's own get -r into another directory.
	back := t.TempDir()
	if _, stderr, code := cli.Run(t, nil, nil, "get", "-r", "photos", back); code != 0 {
		t.Fatalf("get -r: exit %d: %s", code, stderr)
	}
	got := 0
	err := filepath.WalkDir(filepath.Join(back, "photos"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(back, "photos"), p)
		want, ok := files[filepath.ToSlash(rel)]
		if !ok {
			t.Errorf("get -r brought back %s, which was never put", rel)
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		data, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		if !bytes.Equal(data, want) {
			t.Errorf("%s: %d bytes back differ from the %d put", rel, len(data), len(want))
		}
		got++
		return nil
	})
	if err != nil || got != len(files) {
		t.Fatalf("get -r brought back %d of %d files (%v)", got, len(files), err)
	}

	// Nothing changed: --update stores nothing, with one server left.
	before := metas.count()
	stdout, stderr, code := cli.Run(t, nil, nil, "put", "-r", "--update", "--json", dir)
	if code != 0 {
		t.Fatalf("put -r --update: exit %d: %s", code, stderr)
	}
	var sum struct {
		Prefix    string `json:"prefix"`
		Uploaded  int    `json:"uploaded"`
		Unchanged int    `json:"unchanged"`
		Ignored   []struct {
			Path string `json:"path"`
		} `json:"ignored"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("put -r --json: %v: %q", err, stdout)
	}
	if sum.Prefix != "photos" || sum.Uploaded != 0 || sum.Unchanged != len(files) || len(sum.Ignored) != 1 {
		t.Fatalf("put -r --update: %+v, want nothing uploaded and %d unchanged under photos", sum, len(files))
	}
	metas.settle(t)
	if n := metas.count(); n != before {
		t.Fatalf("put -r --update wrote %d meta messages, want none", n-before)
	}
}

// TestPutTreeRefusesAnInvalidNameAndStoresNothing: a tree holding a local
// name that cannot be an ftfs name (a backslash) is refused whole, naming
// it, and nothing is stored.
func TestPutTreeRefusesAnInvalidNameAndStoresNothing(t *testing.T) {
	t.Parallel()
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary"))
	cli := sys.AdminCLI(t)
	dir, _ := makeTree(t, "docs", 20)
	if err := os.WriteFile(filepath.Join(dir, `bad\name.txt`), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := cli.Run(t, nil, nil, "put", "-r", dir)
	if code != 1 || !strings.Contains(stderr, `bad\\name.txt`) || !strings.Contains(stderr, "nothing was uploaded") {
		t.Fatalf("put -r of a tree with a bad name: exit %d: %s", code, stderr)
	}
	if stdout, stderr, code := cli.Run(t, nil, nil, "ls", "--json"); code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Fatalf("ls after a refused tree: exit %d: %s %s", code, stdout, stderr)
	}
}

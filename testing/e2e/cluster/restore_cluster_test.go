package cluster

import (
	"bytes"
	"context"
	"fmt"
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

// TestRestoreOnAClusterSurvivesABrokerKill restores a three-broker
// cluster's files after the loss of all its JetStream data, kills the
// broker leading the files stream, and reads every file (issue 15, item 4:
// restore made the bucket with one replica, the file servers kept it so,
// and with its broker killed every request failed). Once as the README
// says (no --replicas: restore picks three on a cluster of three), once
// with --replicas 1, which the file servers (--replicas 3) must raise.
func TestRestoreOnAClusterSurvivesABrokerKill(t *testing.T) {
	t.Parallel() // see doc.go
	if testing.Short() {
		t.Skip("two three-broker clusters restored; skipped with -short")
	}
	for _, tc := range []struct {
		name    string
		args    []string
		raised  bool // by the file servers, who must say so
		summary string
	}{
		{"as documented", nil, false, "(3 replicas, created)"},
		{"one replica, raised by the file servers", []string{"--replicas", "1"}, true, "(1 replicas, created)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
			admin := sys.Login(t, "admin")
			want := map[string][]byte{
				"a.txt":       sys.PutRandom(t, admin, "a.txt", 1000),
				"big.bin":     sys.PutRandom(t, admin, "big.bin", 3*subjects.ChunkSize+17),
				"dir/empty":   sys.PutRandom(t, admin, "dir/empty", 0),
				"dir/one.bin": sys.PutRandom(t, admin, "dir/one.bin", subjects.ChunkSize),
			}
			sys.ReplicaMatches(t)

			brokers := sys.BrokerNames()
			for _, p := range append([]string{"primary", "backup"}, brokers...) {
				sys.Kill(t, p)
			}
			for _, b := range brokers {
				if err := os.RemoveAll(filepath.Join(sys.Dir, b)); err != nil {
					t.Fatal(err)
				}
			}
			sys.RestartTogether(t, brokers...)
			out, stderr, code := sys.CLI(t).Run(t, nil, []string{subjects.EnvServicePassword + "=" + sys.ServicePassword},
				append([]string{"restore", "--from", sys.ReplicaDir, "--server", sys.URLs()}, tc.args...)...)
			if code != 0 || !strings.Contains(out, fmt.Sprintf("restored %d files", len(want))) || !strings.Contains(out, tc.summary) {
				t.Fatalf("ftfs restore: exit %d: %s%s", code, out, stderr)
			}
			t.Logf("ftfs restore: %s", strings.TrimSpace(out))
			sys.Restart(t, "primary")
			sys.Restart(t, "backup")

			stream := subjects.ObjectStream(subjects.FilesBucket)
			streamAtReplicas(t, sys, stream, 3)
			if tc.raised {
				logs := sys.Logs("primary") + sys.Logs("backup")
				if !strings.Contains(logs, "bucket has fewer replicas than --replicas") {
					t.Error("no file server warned of the bucket's one replica")
				}
			}

			leader := sys.StreamLeader(t, stream)
			sys.Kill(t, leader)
			// Within a leader election's time, not the 31 s of every
			// request failing.
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			admin = sys.Login(t, "admin")
			files, err := admin.List(ctx, "")
			if err != nil {
				t.Fatalf("list with %s killed: %v", leader, err)
			}
			if len(files) != len(want) {
				t.Fatalf("%d files listed with %s killed, want %d: %+v", len(files), leader, len(want), files)
			}
			for name, data := range want {
				var got bytes.Buffer
				if _, err := admin.Get(ctx, name, &got); err != nil {
					t.Fatalf("get %s with %s killed: %v", name, leader, err)
				}
				ftfstest.SameBytes(t, data, got.Bytes())
			}
		})
	}
}

// streamAtReplicas waits until stream has replicas replicas, each current
// (a broker holding one may then be killed without losing a write), and
// says if it never does: the test goes on to show what that costs.
func streamAtReplicas(t *testing.T, sys *ftfstest.System, stream string, replicas int) {
	t.Helper()
	js, err := jetstream.New(sys.ServiceConn(t))
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if last = streamState(js, stream, replicas); last == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s never at %d current replicas in 60 s: %s", stream, replicas, last)
}

// streamState is "" when stream has replicas replicas, each current, and
// else what it has.
func streamState(js jetstream.JetStream, stream string, replicas int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err.Error()
	}
	info := st.CachedInfo()
	ci := info.Cluster
	if ci == nil {
		return fmt.Sprintf("R%d, no cluster info", info.Config.Replicas)
	}
	state := fmt.Sprintf("R%d, leader %q, %d followers", info.Config.Replicas, ci.Leader, len(ci.Replicas))
	if info.Config.Replicas != replicas || ci.Leader == "" || len(ci.Replicas) != replicas-1 {
		return state
	}
	for _, p := range ci.Replicas {
		if !p.Current || p.Lag > 0 || p.Offline {
			return state + fmt.Sprintf("; %s not current (lag %d)", p.Name, p.Lag)
		}
	}
	return ""
}

// TestRestoreRightAfterAClusterStarts runs ftfs restore the moment three
// fresh brokers answer /healthz, again and again, each within a deadline
// (issue 15, item 5: 4 of 45 such restores hung silently, in the object
// store's listing). Each must finish, restore every file, and say how far
// it got. (Before every call had a deadline, 1 of 16 tries here hung until
// the test's deadline killed it.)
func TestRestoreRightAfterAClusterStarts(t *testing.T) {
	t.Parallel() // see doc.go
	if testing.Short() {
		t.Skip("twenty three-broker clusters; skipped with -short")
	}
	dir := t.TempDir()
	for i, size := range []int{10, 0, subjects.ChunkSize + 1, 3000} {
		p := filepath.Join(dir, fmt.Sprintf("d%d/f%d.bin", i%2, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Two at a time (go test's -parallel is the cores): a try spends most
	// of its time waiting for its cluster to form, and a busier machine
	// is no kinder to a restore.
	const tries = 20
	var mu sync.Mutex
	var took []time.Duration
	t.Run("tries", func(t *testing.T) {
		for i := range tries {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers())
				cli := sys.CLI(t)
				cli.Timeout = 60 * time.Second
				start := time.Now()
				out, stderr, code := cli.Run(t, nil, []string{subjects.EnvServicePassword + "=" + sys.ServicePassword},
					"restore", "--from", dir, "--server", sys.URLs())
				mu.Lock()
				took = append(took, time.Since(start).Round(time.Millisecond))
				mu.Unlock()
				if code != 0 || !strings.Contains(out, "restored 4 files") {
					t.Fatalf("ftfs restore (try %d): exit %d after %s: %s%s", i, code, time.Since(start).Round(time.Millisecond), out, stderr)
				}
				if !strings.Contains(stderr, "restore: 4/4 files") {
					t.Errorf("no progress on stderr: %s", stderr)
				}
				if strings.Contains(stderr, "retrying") {
					t.Logf("ftfs restore (try %d) retried: %s", i, stderr)
				}
			})
		}
	})
	t.Logf("restore times: %v", took)
}

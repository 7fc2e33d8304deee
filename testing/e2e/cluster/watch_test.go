package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestWatchSurvivesServerAndBrokerDeath: a watcher follows a workload of
// 300 puts, overwrites, renames and deletes while the primary is killed,
// and then the broker the watcher is connected to. Once the workload is
// over, the watcher has seen exactly its changes, in order, none missing
// and none twice.
func TestWatchSurvivesServerAndBrokerDeath(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute long; skipped with -short")
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	sys.AddUser(t, "alice")
	sys.AddUser(t, "watcher")
	writer := sys.Login(t, "alice")
	watcher := sys.Login(t, "watcher", client.WithLogger(slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	w, err := watcher.Watch(ctx, "load/")
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Close()
	var (
		mu   sync.Mutex
		seen []client.ChangeEvent
	)
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for ev := range w.Events() {
			mu.Lock()
			seen = append(seen, ev)
			mu.Unlock()
		}
	}()

	// Ten files go round put, overwrite, rename, delete of the new name;
	// every seventh put is uploaded in chunks rather than put whole.
	var want []string
	const files, rounds = 10, 30
	for op := range files * rounds {
		round, file := op/files, op%files
		name := fmt.Sprintf("load/f%d", file)
		moved := name + ".moved"
		var err error
		switch round % 4 {
		case 0, 1:
			size := 100 + round*10 + file
			if op%7 == 0 {
				size = 1<<20 + op
			}
			_, err = writer.Put(ctx, name, bytes.NewReader(bytes.Repeat([]byte{byte(op)}, size)), int64(size))
			want = append(want, fmt.Sprintf("put %s %d", name, size))
		case 2:
			var fi client.FileInfo
			fi, err = writer.Rename(ctx, name, moved, false)
			want = append(want, fmt.Sprintf("rename %s->%s %d", name, moved, fi.Size))
		case 3:
			err = writer.Delete(ctx, moved)
			want = append(want, fmt.Sprintf("delete %s 0", moved))
		}
		if err != nil {
			t.Fatalf("change %d (%s): %v", op, want[len(want)-1], err)
		}
		switch op {
		case 100:
			sys.Kill(t, "primary")
		case 200:
			broker := connectedBroker(t, sys, watcher)
			t.Logf("killing %s, the watcher's broker", broker)
			sys.Kill(t, broker)
		}
	}

	show := func(ev client.ChangeEvent) string {
		if ev.From != "" {
			return fmt.Sprintf("%s %s->%s %d", ev.Op, ev.From, ev.Name, ev.Size)
		}
		return fmt.Sprintf("%s %s %d", ev.Op, ev.Name, ev.Size)
	}
	ftfstest.Eventually(t, 2*time.Minute, fmt.Sprintf("the watcher sees the %d changes", len(want)), func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) < len(want) {
			t.Logf("the watcher has seen %d changes, the last %+v", len(seen), seen[max(0, len(seen)-1):])
		}
		return len(seen) >= len(want)
	})
	// One more change: nothing repeated or late comes before it.
	if _, err := writer.Put(ctx, "load/sentinel", strings.NewReader("s"), 1); err != nil {
		t.Fatalf("put the sentinel: %v", err)
	}
	want = append(want, "put load/sentinel 1")
	ftfstest.Eventually(t, time.Minute, "the watcher sees the sentinel", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= len(want)
	})
	w.Close()
	<-collected
	if err := w.Err(); err != nil {
		t.Errorf("watch ended with %v", err)
	}
	var got []string
	var prev uint64
	for i, ev := range seen {
		got = append(got, show(ev))
		if ev.Seq <= prev || ev.Compacted {
			t.Errorf("event %d: sequence %d after %d, compacted %v", i, ev.Seq, prev, ev.Compacted)
		}
		prev = ev.Seq
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		for i := range max(len(got), len(want)) {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Fatalf("the watcher saw %d changes, the workload made %d; the first difference, change %d: saw %q, made %q", len(got), len(want), i, g, w)
			}
		}
	}
}

// testLog writes a client's log into the test's.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// connectedBroker names the broker c is connected to.
func connectedBroker(t *testing.T, sys *ftfstest.System, c *client.Client) string {
	t.Helper()
	url := c.Conn().ConnectedUrl()
	for _, name := range sys.BrokerNames() {
		if sys.Process(name).URL() == url {
			return name
		}
	}
	t.Fatalf("the client's broker %s is none of %v", url, sys.BrokerNames())
	return ""
}

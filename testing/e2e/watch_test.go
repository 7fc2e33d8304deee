package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// change is what a test expects of an event.
type change struct {
	op         client.ChangeOp
	name, from string
	size       int64
}

func (c change) String() string {
	if c.from != "" {
		return fmt.Sprintf("%s %s->%s (%d)", c.op, c.from, c.name, c.size)
	}
	return fmt.Sprintf("%s %s (%d)", c.op, c.name, c.size)
}

func changeOfEvent(ev client.ChangeEvent) change {
	return change{op: ev.Op, name: ev.Name, from: ev.From, size: ev.Size}
}

// nextEvents takes n events from w, failing the test if they do not come.
func nextEvents(t *testing.T, w *client.Watcher, n int) []client.ChangeEvent {
	t.Helper()
	var out []client.ChangeEvent
	timeout := time.After(60 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch ended after %d of %d events: %v", len(out), n, w.Err())
			}
			out = append(out, ev)
		case <-timeout:
			t.Fatalf("got %d of %d events in a minute: %v", len(out), n, out)
		}
	}
	return out
}

// sameChanges fails the test unless got is want, change for change, at
// strictly rising sequences.
func sameChanges(t *testing.T, what string, got []client.ChangeEvent, want []change) {
	t.Helper()
	var prev uint64
	for i, ev := range got {
		if ev.Seq <= prev {
			t.Errorf("%s: event %d at sequence %d, after %d", what, i, ev.Seq, prev)
		}
		prev = ev.Seq
	}
	var gotChanges []string
	for _, ev := range got {
		gotChanges = append(gotChanges, changeOfEvent(ev).String())
	}
	var wantChanges []string
	for _, c := range want {
		wantChanges = append(wantChanges, c.String())
	}
	if strings.Join(gotChanges, "\n") != strings.Join(wantChanges, "\n") {
		t.Fatalf("%s:\ngot\n  %s\nwant\n  %s", what, strings.Join(gotChanges, "\n  "), strings.Join(wantChanges, "\n  "))
	}
}

// TestWatchSeesEveryChangeOnce: a watch sees the puts (one request and
// uploaded), overwrites, deletes and renames of its prefix in order, each
// once, a rename as one event, and a rename across the prefix as the put
// or delete of the side it sees; a watch resumed after a change, and the
// CLI's --json and text lines, see exactly the changes after it; after the
// servers' restart, a watch from the start gets what storage keeps.
func TestWatchSeesEveryChangeOnce(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t)
	sys.AddUser(t, "alice")
	bobPassword := sys.AddUser(t, "bob")
	alice := sys.Login(t, "alice")
	bob := sys.Login(t, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	w, err := bob.Watch(ctx, "w/")
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Close()
	put := func(name string, size int) {
		t.Helper()
		if _, err := alice.Put(ctx, name, bytes.NewReader(bytes.Repeat([]byte{'x'}, size)), int64(size)); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	rename := func(from, to string) {
		t.Helper()
		if _, err := alice.Rename(ctx, from, to, false); err != nil {
			t.Fatalf("rename %s: %v", from, err)
		}
	}
	del := func(name string) {
		t.Helper()
		if err := alice.Delete(ctx, name); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	big := 3<<20 + 5 // uploaded in chunks, committed
	put("w/a", 10)
	put("w/b", big)
	put("other/x", 1)
	put("w/a", 20)
	rename("w/a", "w/c")
	del("w/b")
	rename("w/c", "other/y")
	rename("other/x", "w/x")
	del("other/y")
	put("w/last", 3)
	want := []change{
		{client.OpPut, "w/a", "", 10},
		{client.OpPut, "w/b", "", int64(big)},
		{client.OpPut, "w/a", "", 20},
		{client.OpRename, "w/c", "w/a", 20},
		{client.OpDelete, "w/b", "", 0},
		{client.OpDelete, "w/c", "", 0}, // renamed out of view
		{client.OpPut, "w/x", "", 1},    // renamed into view
		{client.OpPut, "w/last", "", 3},
	}
	got := nextEvents(t, w, len(want))
	sameChanges(t, "watch of w/", got, want)
	for _, ev := range got {
		if ev.By != "alice" || ev.Time.IsZero() || ev.Compacted {
			t.Errorf("event %+v: want made by alice, with a time, not compacted", ev)
		}
	}
	// Nothing repeated after the last: the next event is the next change.
	put("w/sentinel", 1)
	sameChanges(t, "watch of w/ after the sentinel", nextEvents(t, w, 1), []change{{client.OpPut, "w/sentinel", "", 1}})

	// Resumed after the third change, a watch sees the rest, no more.
	resumed, err := bob.Watch(ctx, "w/", client.WatchAfter(got[2].Seq))
	if err != nil {
		t.Fatalf("resumed watch: %v", err)
	}
	defer resumed.Close()
	sameChanges(t, "watch resumed", nextEvents(t, resumed, len(want)-3+1), append(want[3:], change{client.OpPut, "w/sentinel", "", 1}))

	// The CLI, through the real binary: --since prints exactly the
	// changes after the one named, as JSON lines with their sequences.
	cli := sys.CLI(t)
	cli.Timeout = time.Minute
	if _, stderr, code := cli.Run(t, nil, []string{"FTFS_PASSWORD=" + bobPassword}, "login", "bob"); code != 0 {
		t.Fatalf("ftfs login bob: exit %d: %s", code, stderr)
	}
	out, stderr, code := cli.Run(t, nil, nil, "watch", "w/", "--json", "--since", strconv.FormatUint(got[4].Seq, 10), "--count", "4")
	if code != 0 {
		t.Fatalf("ftfs watch --json: exit %d: %s", code, stderr)
	}
	var lines []client.ChangeEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var ev client.ChangeEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("ftfs watch --json line %q: %v", sc.Text(), err)
		}
		lines = append(lines, ev)
	}
	sameChanges(t, "ftfs watch --json --since", lines, append(want[5:], change{client.OpPut, "w/sentinel", "", 1}))
	for i, ev := range lines {
		if i < 3 && ev != got[5+i] {
			t.Errorf("ftfs watch --json line %d: %+v, the library saw %+v", i, ev, got[5+i])
		}
	}

	// Live, as text: a line a change with its op, name, size and maker.
	done := make(chan struct{})
	var text string
	go func() {
		defer close(done)
		var code int
		var errText string
		text, errText, code = cli.Run(t, nil, nil, "watch", "w/", "--since", strconv.FormatUint(resumed.Last(), 10), "--count", "2")
		if code != 0 {
			text = fmt.Sprintf("exit %d: %s", code, errText)
		}
	}()
	put("w/live", 2048)
	rename("w/live", "w/renamed")
	<-done
	textLines := strings.Split(strings.TrimSpace(text), "\n")
	if len(textLines) != 2 ||
		!strings.Contains(textLines[0], "  put     w/live  2.0 KiB  alice") ||
		!strings.Contains(textLines[1], "  rename  w/live -> w/renamed  2.0 KiB  alice") {
		t.Fatalf("ftfs watch printed %q; want a put of w/live then its rename, by alice", text)
	}
	// Restarted, the servers hold no change from before: a watch from
	// the start gets what storage keeps, the last change of each name,
	// marked compacted; a rename whose new name is kept is one event, one
	// whose new name changed since is the delete of its old name.
	sys.Stop(t, "primary")
	sys.Stop(t, "backup")
	sys.Restart(t, "primary")
	sys.Restart(t, "backup")
	all, err := bob.Watch(ctx, "w/", client.WatchAfter(0))
	if err != nil {
		t.Fatalf("watch from the start: %v", err)
	}
	defer all.Close()
	kept := []change{
		{client.OpDelete, "w/a", "", 0},
		{client.OpDelete, "w/b", "", 0},
		{client.OpDelete, "w/c", "", 0},
		{client.OpPut, "w/x", "", 1},
		{client.OpPut, "w/last", "", 3},
		{client.OpPut, "w/sentinel", "", 1},
		{client.OpRename, "w/renamed", "w/live", 2048},
	}
	fromStart := nextEvents(t, all, len(kept))
	sameChanges(t, "watch from the start after a restart", fromStart, kept)
	for _, ev := range fromStart {
		if !ev.Compacted {
			t.Errorf("event %+v from what storage keeps: not marked compacted", ev)
		}
	}
	// And then the changes as they come, each once.
	put("w/after-restart", 5)
	sameChanges(t, "watch from the start, then on", nextEvents(t, all, 1), []change{{client.OpPut, "w/after-restart", "", 5}})
}

// TestAWatchShowsOnlyWhatItsUserMayList: bob's watch of everything never
// names a file in alice's private home; a rename out of it shows as the
// new name's put, one into it as the old name's delete.
func TestAWatchShowsOnlyWhatItsUserMayList(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t)
	sys.AddUser(t, "alice")
	sys.AddUser(t, "bob")
	alice := sys.Login(t, "alice")
	bob := sys.Login(t, "bob")
	ctx := ftfstest.Context(t, 3*time.Minute)

	w, err := bob.Watch(ctx, "")
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Close()
	put := func(name string) {
		t.Helper()
		if _, err := alice.Put(ctx, name, strings.NewReader("abc"), 3); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	rename := func(from, to string) {
		t.Helper()
		if _, err := alice.Rename(ctx, from, to, false); err != nil {
			t.Fatalf("rename %s: %v", from, err)
		}
	}
	put("home/alice/secret")
	put("shared/pub")
	rename("home/alice/secret", "shared/out")
	rename("shared/pub", "home/alice/pub")
	if err := alice.Delete(ctx, "home/alice/pub"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	put("shared/sentinel")
	got := nextEvents(t, w, 4)
	sameChanges(t, "bob's watch", got, []change{
		{client.OpPut, "shared/pub", "", 3},
		{client.OpPut, "shared/out", "", 3},
		{client.OpDelete, "shared/pub", "", 0},
		{client.OpPut, "shared/sentinel", "", 3},
	})
	for _, ev := range got {
		if strings.Contains(ev.Name+ev.From, "home/") {
			t.Errorf("bob's watch names alice's home: %+v", ev)
		}
	}
}

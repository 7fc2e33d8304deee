package fileserver

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// leaderRecord stands for the access bucket's leader: what a read from
// storage returns, and how many reads were made.
type leaderRecord struct {
	mu         sync.Mutex
	raw        string
	rev        uint64
	leaderless bool // the mirror answers, as readKV's does without a leader
	reads      atomic.Int32
	gate       chan struct{} // when set, a read waits for it
}

func (l *leaderRecord) read(ctx context.Context) (recordRead, error) {
	l.reads.Add(1)
	l.mu.Lock()
	raw, rev, leaderless, gate := l.raw, l.rev, l.leaderless, l.gate
	l.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return recordRead{}, ctx.Err()
		}
	}
	if leaderless {
		return recordRead{raw: []byte(raw), mirrored: true}, nil
	}
	return recordRead{raw: []byte(raw), rev: rev}, nil
}

func (l *leaderRecord) set(raw string, rev uint64) {
	l.mu.Lock()
	l.raw, l.rev = raw, rev
	l.mu.Unlock()
}

func (m *mirror) put(key, raw string, rev uint64) {
	m.mu.Lock()
	m.entries[key] = mirrored{value: []byte(raw), rev: rev}
	m.mu.Unlock()
}

func readNow(t *testing.T, a *accessReads, ctx context.Context) string {
	t.Helper()
	r := a.join(ctx)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the access read never ended")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return string(r.raw)
}

func TestAccessReadsLeaseNeverOutlivesAChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	leader, mir := &leaderRecord{}, newMirror()
	a := &accessReads{read: leader.read, mirror: mir, wg: &wg}

	leader.set("A", 1)
	mir.put(subjects.AccessKey, "A", 1)
	if got := readNow(t, a, ctx); got != "A" {
		t.Fatalf("first read: %q", got)
	}
	for range 10 {
		if got := readNow(t, a, ctx); got != "A" {
			t.Fatalf("read under the lease: %q", got)
		}
	}
	if n := leader.reads.Load(); n != 1 {
		t.Fatalf("%d reads from storage; the lease should have answered all but the first", n)
	}

	// A change is stored; this server's mirror does not see it (its watch
	// is stuck). Once the change's writer has waited, no read may say A.
	leader.set("B", 2)
	if err := accessChanged(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := readNow(t, a, ctx); got != "B" {
			t.Fatalf("read #%d after the change was acknowledged: %q, want B", i, got)
		}
	}
	if n := leader.reads.Load(); n != 4 {
		t.Fatalf("%d reads from storage, want 4: with the mirror behind, every read goes to storage", n)
	}

	// The mirror catches up: the next read grants a lease again.
	mir.put(subjects.AccessKey, "B", 2)
	for range 5 {
		if got := readNow(t, a, ctx); got != "B" {
			t.Fatalf("read once the mirror caught up: %q", got)
		}
	}
	if n := leader.reads.Load(); n != 5 {
		t.Fatalf("%d reads from storage, want 5", n)
	}
}

func TestAccessReadsShareTheReadThatBeginsAfterThem(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	leader, mir := &leaderRecord{}, newMirror() // an empty mirror: no lease
	a := &accessReads{read: leader.read, mirror: mir, wg: &wg}

	gate := make(chan struct{})
	leader.set("A", 1)
	leader.mu.Lock()
	leader.gate = gate
	leader.mu.Unlock()
	first := a.join(ctx) // starts a read, held at the gate
	for leader.reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// Arriving now, after A was read: the rules change, and these must
	// not share the read in flight, which may have missed the change.
	leader.set("B", 2)
	var later []*accessRead
	for range 20 {
		later = append(later, a.join(ctx))
	}
	close(gate)
	<-first.done
	if string(first.raw) != "A" {
		t.Fatalf("the first read: %q", first.raw)
	}
	for i, r := range later {
		<-r.done
		if string(r.raw) != "B" {
			t.Fatalf("request #%d that arrived after the change got %q", i, r.raw)
		}
	}
	if n := leader.reads.Load(); n != 2 {
		t.Fatalf("%d reads from storage for 21 requests, want 2", n)
	}
}

func TestAccessReadsWaitingOutNoLeaderOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	leader, mir := &leaderRecord{raw: "A", leaderless: true}, newMirror()
	a := &accessReads{read: leader.read, mirror: mir, wg: &wg}

	// The stream has no leader: the read in flight waits, then the
	// mirror answers. Requests that came meanwhile take that answer
	// rather than wait again.
	gate := make(chan struct{})
	leader.gate = gate
	first := a.join(ctx)
	for leader.reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var later []*accessRead
	for range 5 {
		later = append(later, a.join(ctx))
	}
	close(gate)
	for _, r := range append(later, first) {
		<-r.done
		if r.err != nil || string(r.raw) != "A" {
			t.Fatalf("a read while leaderless: %q, %v", r.raw, r.err)
		}
	}
	if n := leader.reads.Load(); n != 1 {
		t.Fatalf("%d reads for requests that came while the first waited for a leader, want 1", n)
	}
	// And no lease from a mirror's answer: the next request reads again.
	readNow(t, a, ctx)
	if n := leader.reads.Load(); n != 2 {
		t.Fatalf("%d reads, want 2: a mirror's answer grants no lease", n)
	}
}

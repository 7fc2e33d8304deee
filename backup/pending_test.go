package backup

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func object(name, nuid string, size uint64) *jetstream.ObjectInfo {
	return &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: name}, NUID: nuid, Size: size, Digest: "SHA-256=" + nuid}
}

// A small file queued after a large one is handed out at once, in its own
// lane; a newer version of a name cancels the older copy, which is no
// longer current (so it may not place its file), and a delete leaves
// nothing pending.
func TestPendingLanesAndOrderPerName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := newPending()
	now := time.Now()
	large := p.add(ctx, object("big", "L1", 256<<20), now)
	small := p.add(ctx, object("small", "S1", 64<<10), now.Add(time.Millisecond))
	if got := p.next(ctx, 0); got != small {
		t.Fatalf("small lane handed out %v, want the small file", got)
	}
	if got := p.next(ctx, 1); got != large {
		t.Fatalf("large lane handed out %v, want the large file", got)
	}
	if n, oldest := p.lag(); n != 2 || !oldest.Equal(now) {
		t.Fatalf("lag %d since %v, want 2 since %v", n, oldest, now)
	}

	// The same version delivered again (a watch started again) changes nothing.
	if again := p.add(ctx, object("big", "L1", 256<<20), now.Add(time.Second)); again != large || large.ctx.Err() != nil {
		t.Fatal("the same version delivered again replaced its pending copy")
	}
	// A newer version of big, while its old copy is in flight.
	newer := p.add(ctx, object("big", "L2", 1<<10), now.Add(2*time.Second))
	if large.ctx.Err() == nil || p.current(large) {
		t.Fatal("the older copy of big is neither cancelled nor superseded")
	}
	if p.done(large); !p.current(newer) {
		t.Fatal("the older copy finishing dropped the newer change")
	}
	if got := p.next(ctx, 0); got != newer {
		t.Fatalf("small lane handed out %v, want the newer (small) version of big", got)
	}
	// A delete of small while its copy runs: nothing of it stays pending.
	p.forget("small")
	if small.ctx.Err() == nil || p.current(small) {
		t.Fatal("a deleted name's copy is still current")
	}
	if _, _, ok := p.pendingInfo("small"); ok {
		t.Fatal("a deleted name is still pending")
	}
	if empty := p.done(newer); !empty {
		t.Fatalf("pending after every change is done: %v", p.infos())
	}

	// A superseded change still queued is skipped.
	p.add(ctx, object("x", "X1", 1), now)
	x2 := p.add(ctx, object("x", "X2", 1), now)
	if got := p.next(ctx, 0); got != x2 {
		t.Fatalf("handed out %v, want the newest version of x only", got)
	}
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if got := p.next(short, 0); got != nil {
		t.Fatalf("handed out %v from an empty queue", got)
	}
}

package fileserver

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

func TestChangeOfTellsPutDeleteAndRenameHalves(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := &call{user: "bob", req: requestWith(subjects.Rename, "{}")}
	put := stamped(c, jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: "a", Metadata: map[string]string{subjects.MetaOwner: "alice"}}, Size: 7})
	moved, tomb := stamped(c, put), stamped(c, put)
	moved.Name = "b"
	markRename(&moved, &tomb, "a", "b")
	tomb.Deleted = true
	// A delete after the rename, stamped from the tombstone's info, is a
	// plain delete: the rename's marks stay with the rename.
	del := stamped(&call{user: "carol", req: requestWith(subjects.Delete, "{}")}, tomb)
	upload := jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: "u", Metadata: map[string]string{subjects.MetaOwner: "dave"}}, Size: 9}

	for _, tc := range []struct {
		info      jetstream.ObjectInfo
		want      subjects.ChangeEvent
		renamedTo string
	}{
		{put, subjects.ChangeEvent{Seq: 1, Op: subjects.OpPut, Name: "a", Size: 7, Owner: "alice", By: "bob", Time: at}, ""},
		{moved, subjects.ChangeEvent{Seq: 1, Op: subjects.OpRename, Name: "b", From: "a", Size: 7, Owner: "alice", By: "bob", Time: at}, ""},
		{tomb, subjects.ChangeEvent{Seq: 1, Op: subjects.OpDelete, Name: "a", Owner: "alice", By: "bob", Time: at}, "b"},
		{del, subjects.ChangeEvent{Seq: 1, Op: subjects.OpDelete, Name: "a", Owner: "alice", By: "carol", Time: at}, ""},
		{upload, subjects.ChangeEvent{Seq: 1, Op: subjects.OpPut, Name: "u", Size: 9, Owner: "dave", By: "dave", Time: at}, ""},
	} {
		b, err := json.Marshal(tc.info)
		if err != nil {
			t.Fatal(err)
		}
		ev, renamedTo, err := changeOf(1, at, b)
		if err != nil || ev != tc.want || renamedTo != tc.renamedTo {
			t.Errorf("changeOf(%s) = %+v, %q, %v; want %+v, %q", b, ev, renamedTo, err, tc.want, tc.renamedTo)
		}
	}
	if _, _, err := changeOf(1, at, []byte("{")); err == nil {
		t.Error("changeOf of a broken meta: no error")
	}
}

func seqs(events []subjects.ChangeEvent) []uint64 {
	var out []uint64
	for _, ev := range events {
		out = append(out, ev.Seq)
	}
	return out
}

func ringEvent(seq uint64, name string) *subjects.ChangeEvent {
	return &subjects.ChangeEvent{Seq: seq, Op: subjects.OpPut, Name: name}
}

func TestChangeRingCoversOnlyWhatItReadWhole(t *testing.T) {
	var r changeRing
	if _, _, _, covered := r.since(0); covered {
		t.Fatal("a ring whose watch has not begun covers changes")
	}
	r.begin(10)
	if r.wants(10) || !r.wants(11) {
		t.Fatal("the ring wants the metas up to where its watch began")
	}
	_, _, grew, _ := r.since(10)
	r.add(changeRecord{seq: 8, name: "old", expect: 0, hasExpect: true, event: ringEvent(8, "old")}) // read as storage keeps it
	r.add(changeRecord{seq: 11, name: "a", expect: 0, hasExpect: true, event: ringEvent(11, "a")})
	select {
	case <-grew:
	default:
		t.Fatal("adding a change does not wake the waiting watches")
	}
	r.add(changeRecord{seq: 12, name: "b", expect: 0, hasExpect: true, event: nil}) // a rename's tombstone: no event
	r.add(changeRecord{seq: 13, name: "a", expect: 11, hasExpect: true, event: ringEvent(13, "a")})
	events, last, _, covered := r.since(10)
	if !covered || last != 13 || !slices.Equal(seqs(events), []uint64{11, 13}) {
		t.Fatalf("since(10) = %v, last %d, covered %v; want [11 13], 13, true", seqs(events), last, covered)
	}
	if events, _, _, covered := r.since(11); !covered || !slices.Equal(seqs(events), []uint64{13}) {
		t.Fatalf("since(11) = %v, %v; want [13]", seqs(events), covered)
	}
	if _, _, _, covered := r.since(9); covered {
		t.Fatal("the ring covers changes from before its watch began")
	}

	// The watch misses a change of b (rolled up before it was read): the
	// next meta of b names it, and the ring no longer covers it.
	r.add(changeRecord{seq: 20, name: "b", expect: 15, hasExpect: true, event: ringEvent(20, "b")})
	if _, _, _, covered := r.since(13); covered {
		t.Fatal("the ring covers a span whose change of b it missed")
	}
	if events, _, _, covered := r.since(15); !covered || !slices.Equal(seqs(events), []uint64{20}) {
		t.Fatalf("since(15) = %v, %v; want [20]", seqs(events), covered)
	}

	// A watch started over goes on where the ring is; one over a stream
	// holding less (made anew) starts the ring over.
	r.begin(20)
	if events, _, _, covered := r.since(15); !covered || len(events) != 1 {
		t.Fatalf("a watch started over lost the ring: %v, %v", seqs(events), covered)
	}
	r.begin(3)
	if _, _, _, covered := r.since(2); covered {
		t.Fatal("a ring started over covers what came before it")
	}
	if events, last, _, covered := r.since(3); !covered || len(events) != 0 || last != 3 {
		t.Fatalf("a ring started over at 3: %v, last %d, %v", seqs(events), last, covered)
	}
}

// TestChangeRingFillsGapsWithItsOwnWrites: the metas a server wrote fill
// the gaps its watch leaves (rolled up while it was away), in order; a gap
// another server's write left is still found.
func TestChangeRingFillsGapsWithItsOwnWrites(t *testing.T) {
	var r changeRing
	r.begin(10)
	r.addWritten(changeRecord{seq: 11, name: "a", hasExpect: true, event: ringEvent(11, "a")})
	r.addWritten(changeRecord{seq: 12, name: "a", expect: 11, hasExpect: true, event: ringEvent(12, "a")})
	if events, _, _, _ := r.since(10); len(events) != 0 {
		t.Fatalf("writes the watch has not passed are answered: %v", seqs(events))
	}
	// The watch reads 13 only: 11 and 12 were replaced meanwhile.
	if r.add(changeRecord{seq: 13, name: "a", expect: 12, hasExpect: true, event: ringEvent(13, "a")}) {
		t.Fatal("a gap the server's own writes fill is reported")
	}
	events, _, _, covered := r.since(10)
	if !covered || !slices.Equal(seqs(events), []uint64{11, 12, 13}) {
		t.Fatalf("since(10) = %v, %v; want [11 12 13]", seqs(events), covered)
	}
	// A write the watch read as well counts once.
	r.addWritten(changeRecord{seq: 14, name: "b", hasExpect: true, event: ringEvent(14, "b")})
	r.add(changeRecord{seq: 14, name: "b", hasExpect: true, event: ringEvent(14, "b")})
	if events, _, _, _ := r.since(13); !slices.Equal(seqs(events), []uint64{14}) {
		t.Fatalf("since(13) = %v; want [14] once", seqs(events))
	}
	if !r.add(changeRecord{seq: 20, name: "b", expect: 17, hasExpect: true, event: ringEvent(20, "b")}) {
		t.Fatal("a gap no write of the server fills is not reported")
	}
	if _, _, _, covered := r.since(16); covered {
		t.Fatal("the ring covers a change it missed")
	}
}

func TestChangeRingDropsTheOldest(t *testing.T) {
	r := changeRing{size: 3}
	r.begin(0)
	for seq := uint64(1); seq <= 5; seq++ {
		r.add(changeRecord{seq: seq, name: "n", expect: seq - 1, hasExpect: true, event: ringEvent(seq, "n")})
	}
	if _, _, _, covered := r.since(1); covered {
		t.Fatal("a full ring covers what it dropped")
	}
	events, _, _, covered := r.since(2)
	if !covered || !slices.Equal(seqs(events), []uint64{3, 4, 5}) {
		t.Fatalf("since(2) = %v, %v; want [3 4 5]", seqs(events), covered)
	}
	// What it dropped does not count as a missed change of its name.
	r.add(changeRecord{seq: 6, name: "n", expect: 5, hasExpect: true, event: ringEvent(6, "n")})
	if _, _, _, covered := r.since(3); !covered {
		t.Fatal("a change following one in the ring is taken for a gap")
	}
}

func TestVisibleChangeFoldsARenameHalfOutOfView(t *testing.T) {
	s := &Server{}
	c := &call{user: "alice", admin: true} // the prefix alone decides
	rename := subjects.ChangeEvent{Seq: 5, Op: subjects.OpRename, Name: "in/b", From: "out/a", Size: 3}
	if ev, ok := s.visibleChange(c, "in/", rename); !ok || ev.Op != subjects.OpPut || ev.Name != "in/b" || ev.From != "" {
		t.Errorf("rename into the prefix: %+v, %v; want a put of in/b", ev, ok)
	}
	rename.Name, rename.From = "out/b", "in/a"
	if ev, ok := s.visibleChange(c, "in/", rename); !ok || ev.Op != subjects.OpDelete || ev.Name != "in/a" || ev.Size != 0 {
		t.Errorf("rename out of the prefix: %+v, %v; want a delete of in/a", ev, ok)
	}
	rename.Name = "in/b"
	if ev, ok := s.visibleChange(c, "in/", rename); !ok || ev != rename {
		t.Errorf("rename within the prefix: %+v, %v; want it as it is", ev, ok)
	}
	if _, ok := s.visibleChange(c, "other/", rename); ok {
		t.Error("a rename outside the prefix is visible")
	}
	if _, ok := s.visibleChange(c, "in/", subjects.ChangeEvent{Op: subjects.OpPut, Name: "out/x"}); ok {
		t.Error("a put outside the prefix is visible")
	}
}

func TestVisibleChangeFoldsARenameHalfAliceMayNotList(t *testing.T) {
	s := &Server{}
	p, err := parsePolicy([]byte(`{"rules":{"secret/":{"lines":["read,list: bob"]}},"updated":"2026-12-03T00:00:00Z","by":"admin"}`))
	if err != nil {
		t.Fatal(err)
	}
	c := &call{user: "alice", access: &accessView{user: "alice", p: p, folders: map[string]rights{}}}
	out := subjects.ChangeEvent{Seq: 7, Op: subjects.OpRename, Name: "secret/a", From: "open/a", Size: 3}
	if ev, ok := s.visibleChange(c, "", out); !ok || ev.Op != subjects.OpDelete || ev.Name != "open/a" {
		t.Errorf("rename into a folder alice may not list: %+v, %v; want a delete of open/a", ev, ok)
	}
	in := subjects.ChangeEvent{Seq: 8, Op: subjects.OpRename, Name: "open/b", From: "secret/b", Size: 3}
	if ev, ok := s.visibleChange(c, "", in); !ok || ev.Op != subjects.OpPut || ev.Name != "open/b" || ev.From != "" {
		t.Errorf("rename out of a folder alice may not list: %+v, %v; want a put of open/b, naming nothing hidden", ev, ok)
	}
	if _, ok := s.visibleChange(c, "", subjects.ChangeEvent{Seq: 9, Op: subjects.OpPut, Name: "secret/c"}); ok {
		t.Error("a put alice may not list is visible to her")
	}
}

func TestChangeRingBoundsTheWatchesHeld(t *testing.T) {
	var r changeRing
	for range maxHeldWatchesPerUser {
		if !r.hold("mallory") {
			t.Fatal("a user's first watches are refused")
		}
	}
	if r.hold("mallory") {
		t.Fatal("a user holds more watches than the bound")
	}
	if !r.hold("alice") {
		t.Fatal("one user's watches refuse another's")
	}
	r.release("mallory")
	if !r.hold("mallory") {
		t.Fatal("a released watch is still counted")
	}
}

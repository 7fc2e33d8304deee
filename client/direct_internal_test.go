package client

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/ackwindow"
)

// stubAck is a publish whose ack is already in.
type stubAck struct {
	ok  chan *jetstream.PubAck
	err chan error
}

func ackedAt(seq uint64) *stubAck {
	a := &stubAck{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	a.ok <- &jetstream.PubAck{Sequence: seq}
	return a
}

func (a *stubAck) Ok() <-chan *jetstream.PubAck { return a.ok }
func (a *stubAck) Err() <-chan error            { return a.err }
func (a *stubAck) Msg() *nats.Msg               { return nil }

// TestCountSeesAChunkStoredBeforeAnEarlierOne: a chunk is counted stored,
// freed and reported only if it is in order (ackwindow.InOrder, tested
// there); one out of order fails the count with errOutOfOrder.
func TestCountSeesAChunkStoredBeforeAnEarlierOne(t *testing.T) {
	pending := func(seqs ...uint64) *directUploader {
		u := &directUploader{}
		for i, seq := range seqs {
			u.pending = append(u.pending, &directChunk{index: uint32(i), data: make([]byte, 4), ack: ackwindow.Ack{Future: ackedAt(seq)}})
		}
		return u
	}
	head := func(u *directUploader) *jetstream.PubAck {
		if p := u.pending[0]; p.ack.Early != nil {
			return p.ack.Early // taken by the count before
		}
		return <-u.pending[0].ack.Future.Ok()
	}

	u := pending(11, 12, 13)
	for range 3 {
		if err := u.count(head(u)); err != nil {
			t.Fatalf("in order: %v", err)
		}
	}
	if u.stored != 3 || u.lastSeq != 13 || len(u.pending) != 0 || u.rep.p.Done != 12 {
		t.Fatalf("after three in order: stored %d, last %d, pending %d, done %d", u.stored, u.lastSeq, len(u.pending), u.rep.p.Done)
	}

	u = pending(12, 11) // chunk 1 stored before chunk 0
	if err := u.count(head(u)); !errors.Is(err, errOutOfOrder) || u.stored != 0 || len(u.pending) != 2 || u.rep.p.Done != 0 {
		t.Fatalf("chunk stored before an earlier one: %v, stored %d, pending %d, done %d", err, u.stored, len(u.pending), u.rep.p.Done)
	}

	u = pending(20, 21)
	u.lastSeq = 25 // a chunk counted before was stored later than these
	if err := u.count(head(u)); !errors.Is(err, errOutOfOrder) {
		t.Fatalf("chunk stored before the last one counted: %v", err)
	}
}

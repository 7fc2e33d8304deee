package ackwindow

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// future is a publish's future whose ack the test gives.
type future struct {
	jetstream.PubAckFuture // not called by InOrder
	ok                     chan *jetstream.PubAck
}

func (f *future) Ok() <-chan *jetstream.PubAck { return f.ok }

// acked is a publish whose ack, at stream sequence seq, is in.
func acked(seq uint64) *Ack {
	f := &future{ok: make(chan *jetstream.PubAck, 1)}
	f.ok <- &jetstream.PubAck{Sequence: seq}
	return &Ack{Future: f}
}

// waiting is a publish whose ack is not in yet.
func waiting() *Ack { return &Ack{Future: &future{ok: make(chan *jetstream.PubAck, 1)}} }

func self(a *Ack) *Ack { return a }

// TestInOrder checks the order check with acks as they arrive (in the
// order of their sequences): the first publish in flight is counted only
// at a sequence past the last one counted, and only if no publish after
// it was stored before it, a case a publish sent again after "no
// responders" produced (chunk 5 stored at 20119, chunk 4 at 20120: the
// file read back wrong).
func TestInOrder(t *testing.T) {
	failed := &Ack{Err: errors.New("not sent")}
	settled := acked(20117)
	settled.Settled = true
	cases := []struct {
		name     string
		last     uint64
		seq      uint64
		later    []*Ack
		in       bool
		earlyAck []uint64 // the later acks kept for their turn (0: none)
	}{
		{name: "alone", last: 20118, seq: 20120, in: true},
		{name: "the first of all", last: 0, seq: 1, in: true},
		{name: "before the last one counted", last: 20118, seq: 20117},
		{name: "at the last one counted", last: 20118, seq: 20118},
		{name: "before the last one counted, later ones after it", last: 25, seq: 20, later: []*Ack{acked(21)}},
		{name: "later ones after it", last: 20118, seq: 20119, later: []*Ack{acked(20120), waiting(), acked(20125)}, in: true, earlyAck: []uint64{20120, 0, 20125}},
		{name: "a later one before it", last: 20118, seq: 20120, later: []*Ack{acked(20119)}, earlyAck: []uint64{20119}},
		{name: "a later one before it, its ack taken already", last: 11, seq: 13, later: []*Ack{{Early: &jetstream.PubAck{Sequence: 12}, Future: &future{}}}},
		{name: "one further on before it", last: 20118, seq: 20121, later: []*Ack{acked(20122), acked(20119)}},
		{name: "a later one not sent, or settled, is passed by", last: 20116, seq: 20120, later: []*Ack{failed, settled}, in: true, earlyAck: []uint64{0, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := InOrder(c.last, c.seq, c.later, self); got != c.in {
				t.Fatalf("InOrder(%d, %d) = %v, want %v", c.last, c.seq, got, c.in)
			}
			for i, want := range c.earlyAck {
				a := c.later[i]
				if (want == 0) != (a.Early == nil) || (a.Early != nil && a.Early.Sequence != want) {
					t.Fatalf("later publish %d kept ack %+v, want sequence %d", i, a.Early, want)
				}
			}
		})
	}

	// A window counted in turn: each publish's ack, taken early by the
	// check of the one before, is used in its turn.
	t.Run("a window in turn", func(t *testing.T) {
		window := []*Ack{acked(11), acked(12), acked(13)}
		last := uint64(0)
		for len(window) > 0 {
			head := window[0]
			ack := head.Early
			if ack == nil {
				ack = <-head.Future.Ok()
			}
			if !InOrder(last, ack.Sequence, window[1:], self) {
				t.Fatalf("publish at %d after %d: out of order", ack.Sequence, last)
			}
			last, window = ack.Sequence, window[1:]
		}
		if last != 13 {
			t.Fatalf("last counted at %d, want 13", last)
		}
	})

	t.Run("sent again", func(t *testing.T) {
		a := acked(7)
		a.Early, a.Settled = &jetstream.PubAck{Sequence: 7}, true
		f := &future{}
		a.Sent(f, nil)
		if a.Future != f || a.Early != nil || a.Settled || a.Err != nil {
			t.Fatalf("after Sent: %+v", a)
		}
	})
}

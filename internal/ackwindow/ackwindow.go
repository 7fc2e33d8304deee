// Package ackwindow checks the order in which JetStream stored a window of
// publishes sent one after the other without waiting (PublishMsgAsync).
//
// Publishes sent in order over one connection are stored in order, unless
// one fails or goes unanswered while the ones behind it are stored, or a
// publish is sent again (after "no responders") behind later ones. A
// sender that must store chunks strictly in order (the client's direct
// upload, the file server's upload writer) takes the acks in the order it
// sent the publishes, and counts the first one in flight stored only if
// InOrder says so; on false it repairs or resumes.
package ackwindow

import "github.com/nats-io/nats.go/jetstream"

// Ack is where one publish of a window stands with its acknowledgement.
type Ack struct {
	// Future is the publish's future; nil when the publish failed before
	// it was sent (Err).
	Future jetstream.PubAckFuture
	Err    error
	// Early is the publish's ack, taken by InOrder before its turn: the
	// sender uses it, rather than Future, when the publish comes first.
	Early *jetstream.PubAck
	// Settled says the sender took the publish's outcome itself (it
	// failed, or went unanswered too long): InOrder passes it by.
	Settled bool
}

// Sent records a publish sent, or sent again, as PublishMsgAsync returned
// it: an ack taken early and an outcome taken for a send before are
// forgotten.
func (a *Ack) Sent(f jetstream.PubAckFuture, err error) {
	*a = Ack{Future: f, Err: err}
}

// InOrder says whether the first publish of a window, acknowledged at
// stream sequence seq, was stored after the last publish counted (stored
// at sequence last; 0 when there is none) and before every publish after
// it, later, in the order they were sent; ack gives a publish's Ack.
//
// Acks come in the order of their sequences, so a later publish stored
// before it has its ack in already: InOrder takes the later acks that are
// in (keeping each in Early, for its turn) and looks at them. A later
// publish whose ack is not in yet was stored after it, if at all.
func InOrder[T any](last, seq uint64, later []T, ack func(T) *Ack) bool {
	if seq <= last {
		return false
	}
	for _, p := range later {
		a := ack(p)
		if a.Future == nil || a.Err != nil || a.Settled {
			continue
		}
		if a.Early == nil {
			select {
			case early := <-a.Future.Ok():
				a.Early = early
			default:
				continue
			}
		}
		if a.Early.Sequence < seq {
			return false
		}
	}
	return true
}

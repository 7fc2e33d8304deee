package store

import (
	"context"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The files bucket's calls. A file server writes the object store's
// stream itself, message by message (chunks behind fences, metas), so
// that every write can say what it expects to find.

// Objects is the files bucket's object store, opened by OpenBuckets: for
// reads as nats.go makes them (tests, tools).
func (st *Store) Objects() jetstream.ObjectStore { return st.objects }

// ObjectStream is the files bucket's stream, opened by OpenBuckets.
func (st *Store) ObjectStream() jetstream.Stream { return st.objectStream }

// ObjectStreamName is the name of the files bucket's stream.
func (st *Store) ObjectStreamName() string { return st.objectStream.CachedInfo().Config.Name }

// ObjectStreamCachedInfo is the files bucket's stream info as last read
// (at OpenBuckets, or by ObjectStreamInfo), without asking JetStream.
func (st *Store) ObjectStreamCachedInfo() *jetstream.StreamInfo {
	return st.objectStream.CachedInfo()
}

// ObjectStreamInfo reads the files bucket's stream info, readAttempt at a
// time.
func (st *Store) ObjectStreamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	var info *jetstream.StreamInfo
	err := st.RetryRead(ctx, st.ObjectStreamName(), func(ctx context.Context) (err error) {
		info, err = st.objectStream.Info(ctx)
		return err
	})
	return info, err
}

// ListObjects lists the object store's objects with nats.go's ordered
// consumer, in one attempt: fast, and consistent on a single replica only.
func (st *Store) ListObjects(ctx context.Context) ([]*jetstream.ObjectInfo, error) {
	return st.objects.List(ctx)
}

// MsgIDHeader holds a stored message's ID (Expect.MsgID).
const MsgIDHeader = jetstream.MsgIDHeader

// Expect is what JetStream checks before it stores a message (Publish,
// PublishAsync), and how it stores it. The check is always made: the last
// message on subject LastOf, or on the message's own subject when LastOf
// is "", must be at stream sequence LastSeq (0: there is none).
type Expect struct {
	LastSeq uint64
	LastOf  string
	// MsgID makes JetStream answer a repeat within its duplicate window
	// with the first one's sequence (a duplicate) instead of storing it.
	MsgID string
	// Rollup: the message replaces every earlier one on its subject.
	Rollup bool
}

func (e Expect) apply(m *nats.Msg) {
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(e.LastSeq, 10))
	if e.LastOf != "" {
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, e.LastOf)
	}
	if e.MsgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, e.MsgID)
	}
	if e.Rollup {
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	}
}

// Publish stores m in the files bucket's stream as e expects, WriteAttempt
// at a time: a repeat of an attempt that was stored is refused by e's
// check or answered as a duplicate of its MsgID. e's headers are added to
// m's.
func (st *Store) Publish(ctx context.Context, m *nats.Msg, e Expect) (*jetstream.PubAck, error) {
	e.apply(m)
	var ack *jetstream.PubAck
	err := st.RetryWrite(ctx, st.ObjectStreamName(), func(ctx context.Context) (err error) {
		ack, err = st.js.PublishMsg(ctx, m)
		return err
	})
	return ack, err
}

// PublishAsync sends m to the files bucket's stream as e expects, without
// waiting, and never again: nats.go would send a publish answered "no
// responders" (a leader being elected) again 250 ms later, after the
// messages sent behind it, which are then stored before it.
func (st *Store) PublishAsync(m *nats.Msg, e Expect) (jetstream.PubAckFuture, error) {
	e.apply(m)
	return st.js.PublishMsgAsync(m, jetstream.WithRetryAttempts(0))
}

// PurgeSubject purges every message on subject of the files bucket's
// stream. One attempt.
func (st *Store) PurgeSubject(ctx context.Context, subject string) error {
	return st.objectStream.Purge(ctx, jetstream.WithPurgeSubject(subject))
}

// PurgeSubjectThrough purges the messages on subject of the files
// bucket's stream up to and including stream sequence seq: one stored
// after it stays. One attempt.
func (st *Store) PurgeSubjectThrough(ctx context.Context, subject string, seq uint64) error {
	return st.objectStream.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(seq+1))
}

// DeleteMsg deletes the message at stream sequence seq of the files
// bucket's stream. One attempt.
func (st *Store) DeleteMsg(ctx context.Context, seq uint64) error {
	return st.objectStream.DeleteMsg(ctx, seq)
}

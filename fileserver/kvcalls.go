package fileserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// Bucket calls made for a request are bounded one attempt at a time
// (readAttempt, writeAttempt) rather than by the request's context: a call
// sent to its stream's leader as it died is never answered, and would hold
// the request, keepalives flowing, until the client gave up.

// kvGet reads key, readAttempt at a time.
func (s *Server) kvGet(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	var e jetstream.KeyValueEntry
	err := s.retryRead(ctx, subjects.KVStream(kv.Bucket()), func(ctx context.Context) (err error) {
		e, err = kv.Get(ctx, key)
		return err
	})
	return e, err
}

// kvCreate creates key with value, writeAttempt at a time.
func (s *Server) kvCreate(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) (uint64, error) {
	return s.kvWrite(ctx, kv, key, value, 0)
}

// kvUpdate replaces key's value at revision rev, writeAttempt at a time.
func (s *Server) kvUpdate(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	return s.kvWrite(ctx, kv, key, value, rev)
}

// kvWrite creates (rev 0) or updates key. An attempt whose answer was lost
// may have stored the value all the same, and the next attempt is then told
// the key exists or has moved on: a key holding these very bytes is taken
// for that attempt's work (every value written through here is unique: it
// carries a fresh ID or timestamp). The key is read through its stream's
// leader, tried through a leader election: a bucket Get may be answered by
// a replica that has not yet applied that attempt.
func (s *Server) kvWrite(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	var newRev uint64
	tried := false
	err := s.retryFor(ctx, subjects.KVStream(kv.Bucket()), func(actx context.Context) (err error) {
		if rev == 0 {
			newRev, err = kv.Create(actx, key, value)
		} else {
			newRev, err = kv.Update(actx, key, value, rev)
		}
		if err != nil && tried && (errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSequence(err)) {
			seq, ok, rerr := s.kvHolds(actx, kv, key, value)
			switch {
			case ok:
				newRev, err = seq, nil
			case rerr != nil:
				// Not known whether the earlier attempt stored it (a
				// server frozen past that attempt reads through a
				// connection the broker closed meanwhile): ask again.
				err = rerr
			}
		}
		tried = true
		return err
	})
	return newRev, err
}

// kvHolds says whether key's latest value in kv is value, read through
// the bucket stream's leader, and at which revision; err when it could not
// read it.
func (s *Server) kvHolds(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) (uint64, bool, error) {
	bucket := kv.Bucket()
	m, err := s.leaderGetFrom(ctx, subjects.KVStream(bucket), leaderGetRequest{LastFor: subjects.KVKey(bucket, key)})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if m.Header.Get(kvOperationHeader) != "" || !bytes.Equal(m.Data, value) {
		return 0, false, nil
	}
	return m.Sequence, true, nil
}

// kvPurge removes key and its history, writeAttempt at a time; a key
// already gone is no error.
func (s *Server) kvPurge(ctx context.Context, kv jetstream.KeyValue, key string) error {
	err := s.retryFor(ctx, subjects.KVStream(kv.Bucket()), func(ctx context.Context) error {
		return kv.Purge(ctx, key)
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// writeAttempt bounds one storage write: one sent to a stream leader as it
// died is never answered, and a new leader is elected within seconds. The
// writes retried carry message IDs or expected revisions, so a repeat of
// one that was stored is harmless.
const writeAttempt = 2 * time.Second

// retryFor retries a storage write f on stream with backoff until it
// succeeds, ctx ends or storage turns read-only, writeAttempt at a time.
func (s *Server) retryFor(ctx context.Context, stream string, f func(context.Context) error) error {
	return s.retryStorage(ctx, stream, writeAttempt, time.Second, f)
}

// retryStorage runs a storage call f on stream, each attempt bounded by
// attempt, again after a timeout or a moment of unavailability (backing
// off up to maxBackoff), until it succeeds, ctx ends or storage turns
// read-only. A stream leader elected meanwhile ends the back-off at once.
// An attempt in flight goes again at once when its own stream elects a
// leader while it waits: it was sent to the leader that died, and the new
// one never answers it. (At an election of any stream, every call waiting
// on a leader that is slow rather than dead would be sent twice, and on
// brokers stalled by their disk, elections come often. Calls sent twice
// are made harmless by their callers: message IDs, expected sequences.)
func (s *Server) retryStorage(ctx context.Context, stream string, attempt, maxBackoff time.Duration, f func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		elected, streamElected := s.elections.wait(stream)
		actx, cancel := context.WithTimeout(ctx, attempt)
		start := time.Now()
		var orphaned atomic.Bool
		stop := context.AfterFunc(streamElected, func() {
			time.AfterFunc(max(0, orphanAfter-time.Since(start)), func() {
				orphaned.Store(true)
				cancel()
			})
		})
		err := f(actx)
		stop()
		cancel()
		if err != nil && orphaned.Load() && errors.Is(err, context.Canceled) && ctx.Err() == nil {
			err = errOrphaned
		}
		if err == nil || !storageUnavailable(err) || ctx.Err() != nil {
			return err
		}
		if s.readOnly.Load() {
			return errReadOnly
		}
		select {
		case <-ctx.Done():
			return err
		case <-elected.Done(): // back-off kept: elections come in bursts
			continue
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// orphanAfter is how long a storage call may have gone unanswered for a
// leader election to cut it short.
const orphanAfter = 250 * time.Millisecond

// errOrphaned: a storage call cut short by a leader election (retryStorage).
var errOrphaned = errors.New("storage call unanswered across a leader election")

// storageUnavailable says whether err is JetStream being briefly unreachable
// (leader election, broker restart): the client should retry.
func storageUnavailable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.Code == 503 || writeInProcess(apiErr)) {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errOrphaned) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) || // async publishes pending when the broker went
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// writeInProcess says JetStream refused a write because an earlier one
// with the same message ID, or to the same subject with an expected last
// sequence, is still being replicated (often our own earlier attempt,
// whose answer was lost with a leader). That is no conflict: the write is
// sent again, and answered as a duplicate or checked for real.
func writeInProcess(apiErr *jetstream.APIError) bool {
	return apiErr.ErrorCode == errCodeDuplicateInProcess || apiErr.ErrorCode == errCodeSubjectInProcess
}

// JetStream error codes nats.go has no names for.
const (
	errCodeDuplicateInProcess jetstream.ErrorCode = 10158 // "duplicate message id is in process"
	errCodeSubjectInProcess   jetstream.ErrorCode = 10164 // "wrong last sequence" (constant): the subject has a write in flight
)

func wrapStorage(what string, err error) error {
	if err == nil {
		return nil
	}
	var e *subjects.Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// StorageUnavailable says whether a storage call failed for want of an
// answer (a deadline, no responders, a broker gone) or because JetStream
// is electing a leader: made again, it may succeed.
func StorageUnavailable(err error) bool { return storageUnavailable(err) }

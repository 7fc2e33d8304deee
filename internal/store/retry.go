package store

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// WriteAttempt bounds one storage write: one sent to a stream leader as it
// died is never answered, and a new leader is elected within seconds. The
// writes retried carry message IDs or expected revisions, so a repeat of
// one that was stored is harmless.
const WriteAttempt = 2 * time.Second

// RetryWrite retries a storage write f on stream with backoff until it
// succeeds, ctx ends or storage turns read-only, WriteAttempt at a time.
func (st *Store) RetryWrite(ctx context.Context, stream string, f func(context.Context) error) error {
	return st.retryStorage(ctx, stream, WriteAttempt, time.Second, f)
}

// readAttempt bounds one storage read. A read sent to a stream leader that
// has just died is never answered; a new leader is elected within seconds,
// so the read is sent again rather than waited on for the whole request.
const readAttempt = 2 * time.Second

// RetryRead runs a storage read, again after a timeout or a moment of
// unavailability, until ctx ends or storage turns read-only.
func (st *Store) RetryRead(ctx context.Context, stream string, read func(context.Context) error) error {
	return st.retryStorage(ctx, stream, readAttempt, 500*time.Millisecond, read)
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
func (st *Store) retryStorage(ctx context.Context, stream string, attempt, maxBackoff time.Duration, f func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		elected, streamElected := st.elections.wait(stream)
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
		if err == nil || !Unavailable(err) || ctx.Err() != nil {
			return err
		}
		if st.readOnly.Load() {
			return st.readOnlyErr
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

// Unavailable says whether err is JetStream being briefly unreachable
// (leader election, broker restart): the client should retry.
func Unavailable(err error) bool {
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

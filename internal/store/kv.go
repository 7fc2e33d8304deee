package store

import (
	"bytes"
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// Bucket calls made for a request are bounded one attempt at a time
// (readAttempt, WriteAttempt) rather than by the request's context: a call
// sent to its stream's leader as it died is never answered, and would hold
// the request, keepalives flowing, until the client gave up.

// KVGet reads key, readAttempt at a time.
func (st *Store) KVGet(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	var e jetstream.KeyValueEntry
	err := st.RetryRead(ctx, subjects.KVStream(kv.Bucket()), func(ctx context.Context) (err error) {
		e, err = kv.Get(ctx, key)
		return err
	})
	return e, err
}

// KVCreate creates key with value, WriteAttempt at a time.
func (st *Store) KVCreate(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) (uint64, error) {
	return st.kvWrite(ctx, kv, key, value, 0)
}

// KVUpdate replaces key's value at revision rev, WriteAttempt at a time.
func (st *Store) KVUpdate(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	return st.kvWrite(ctx, kv, key, value, rev)
}

// KVPut writes key's value whatever it was, WriteAttempt at a time.
func (st *Store) KVPut(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) (uint64, error) {
	var rev uint64
	err := st.RetryWrite(ctx, subjects.KVStream(kv.Bucket()), func(ctx context.Context) (err error) {
		rev, err = kv.Put(ctx, key, value)
		return err
	})
	return rev, err
}

// The calls below make one attempt, bounded by ctx alone: for callers
// that would rather give up than wait out an election (the login
// throttle, the first try of a read a mirror may answer), or that go
// again on their own schedule (the janitor).

// KVGetOnce reads key in one attempt.
func (st *Store) KVGetOnce(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	return kv.Get(ctx, key)
}

// KVCreateOnce creates key with value in one attempt.
func (st *Store) KVCreateOnce(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) (uint64, error) {
	return kv.Create(ctx, key, value)
}

// KVUpdateOnce replaces key's value at revision rev in one attempt.
func (st *Store) KVUpdateOnce(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	return kv.Update(ctx, key, value, rev)
}

// KVPurgeOnce removes key and its history in one attempt.
func (st *Store) KVPurgeOnce(ctx context.Context, kv jetstream.KeyValue, key string) error {
	return kv.Purge(ctx, key)
}

// KVDeleteAt deletes key provided it is still at revision rev, in one
// attempt: a key written meanwhile stays.
func (st *Store) KVDeleteAt(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) error {
	return kv.Delete(ctx, key, jetstream.LastRevision(rev))
}

// KVKeys lists kv's keys, in one attempt.
func (st *Store) KVKeys(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// KVWatchAll watches every key of kv until ctx ends or the watcher stops:
// each key's value, then a nil entry, then every change.
func (st *Store) KVWatchAll(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
	return kv.WatchAll(ctx)
}

// kvWrite creates (rev 0) or updates key. An attempt whose answer was lost
// may have stored the value all the same, and the next attempt is then told
// the key exists or has moved on: a key holding these very bytes is taken
// for that attempt's work (every value written through here is unique: it
// carries a fresh ID or timestamp). The key is read through its stream's
// leader, tried through a leader election: a bucket Get may be answered by
// a replica that has not yet applied that attempt.
func (st *Store) kvWrite(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	var newRev uint64
	tried := false
	err := st.RetryWrite(ctx, subjects.KVStream(kv.Bucket()), func(actx context.Context) (err error) {
		if rev == 0 {
			newRev, err = kv.Create(actx, key, value)
		} else {
			newRev, err = kv.Update(actx, key, value, rev)
		}
		if err != nil && tried && (errors.Is(err, jetstream.ErrKeyExists) || WrongLastSequence(err)) {
			seq, ok, rerr := st.kvHolds(actx, kv, key, value)
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
func (st *Store) kvHolds(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) (uint64, bool, error) {
	bucket := kv.Bucket()
	m, err := st.LeaderGet(ctx, subjects.KVStream(bucket), MsgRequest{LastFor: subjects.KVKey(bucket, key)})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if m.Header.Get(KVOperationHeader) != "" || !bytes.Equal(m.Data, value) {
		return 0, false, nil
	}
	return m.Sequence, true, nil
}

// KVPurge removes key and its history, WriteAttempt at a time; a key
// already gone is no error.
func (st *Store) KVPurge(ctx context.Context, kv jetstream.KeyValue, key string) error {
	err := st.RetryWrite(ctx, subjects.KVStream(kv.Bucket()), func(ctx context.Context) error {
		return kv.Purge(ctx, key)
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// KVOperationHeader marks a key-value delete or purge (nats.go
// jetstream/kv.go); a put has none.
const KVOperationHeader = "KV-Operation"

// WrongLastSequence says whether err is JetStream refusing a write whose
// expected last sequence (of its subject, or a key's revision) has moved on.
func WrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

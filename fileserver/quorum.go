package fileserver

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// Quorum loss. With two of three brokers down JetStream can neither store
// nor read through its leaders; a request that waits for it would hang
// until its deadline. Each file server therefore counts the brokers that
// answer its census (subjects.BrokerCensus) and, while too few are up to
// elect a leader, is read-only: writes fail at once with CodeReadOnly,
// sessions and users are checked against an in-memory mirror of their
// buckets, and reads are served from a backup's replica dir (see Fallback).
// The census and the read-only state are the store's
// (internal/store/quorum.go).

// errReadOnly is the answer to a write while storage has no quorum.
var errReadOnly = subjects.Errorf(subjects.CodeReadOnly,
	"read-only: storage quorum lost (too few brokers are up); downloads and listings are served from the backup's replica, writes resume when a broker returns")

// writable refuses f while storage is read-only.
func (s *Server) writable(f op) op {
	return func(c *call) (any, error) {
		if s.store.ReadOnly() {
			return nil, errReadOnly
		}
		return f(c)
	}
}

// mirror is an in-memory copy of a KV bucket, kept by a watch. It answers
// for the bucket while storage has no quorum; at other times the bucket
// itself is read, so that a change made a moment ago on another server is
// never missed (the access bucket's mirror also answers while a read has
// found it current: accessReads' lease).
type mirror struct {
	mu      sync.RWMutex
	entries map[string]mirrored
	loaded  atomic.Bool // the watch has delivered the bucket's contents
}

// mirrored is one key's value and its revision.
type mirrored struct {
	value []byte
	rev   uint64
}

func newMirror() *mirror { return &mirror{entries: map[string]mirrored{}} }

// sessionUser is the user of the session token, if this mirror of the
// sessions bucket holds it (however current it is).
func (m *mirror) sessionUser(token string) (string, bool) {
	if token == "" {
		return "", false
	}
	v, ok := m.get(sessionKey(token))
	var sess sessionRecord
	if !ok || json.Unmarshal(v, &sess) != nil || sess.User == "" {
		return "", false
	}
	return sess.User, true
}

func (m *mirror) get(key string) ([]byte, bool) {
	v, _, ok := m.getRevision(key)
	return v, ok
}

// getRevision is get with the entry's revision.
func (m *mirror) getRevision(key string) ([]byte, uint64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.entries[key]
	return e.value, e.rev, ok
}

// follow watches kv into m until ctx ends, starting the watch again after
// a failure.
func (m *mirror) follow(ctx context.Context, s *Server, kv jetstream.KeyValue) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := m.watch(ctx, s.store, kv)
		if ctx.Err() != nil {
			return
		}
		s.log.Debug("bucket mirror restarting", "bucket", kv.Bucket(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (m *mirror) watch(ctx context.Context, st *store.Store, kv jetstream.KeyValue) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := st.KVWatchAll(wctx, kv)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e == nil {
				m.loaded.Store(true) // initial values delivered
				continue
			}
			m.apply(e)
		}
	}
}

// apply records a change the watch delivered. The watch delivers a key's
// changes in order, and a restarted one each key's latest, so what the
// mirror says only moves forward (accessReads' lease relies on it).
func (m *mirror) apply(e jetstream.KeyValueEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		m.entries[e.Key()] = mirrored{value: e.Value(), rev: e.Revision()}
	} else {
		delete(m.entries, e.Key())
	}
}

// expireSessions sweeps the sessions mirror until the server stops, on
// the janitor's schedule.
func (s *Server) expireSessions() {
	s.every(s.janitorEvery(), s.sessionsMirror.sweepSessions)
}

// sweepSessions drops mirrored sessions past their expiry (the bucket's TTL
// removes them without a delete marker).
func (m *mirror) sweepSessions() {
	now := time.Now()
	m.dropExpired(func(v []byte) bool {
		var sess sessionRecord
		return json.Unmarshal(v, &sess) != nil || now.After(sess.Expires)
	})
}

// dropExpired removes the entries expired says are past their life.
func (m *mirror) dropExpired(expired func([]byte) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.entries {
		if expired(e.value) {
			delete(m.entries, k)
		}
	}
}

// readKV reads key from kv, or from its mirror once storage is read-only,
// or when the mirror has the key while the bucket's stream has no leader.
// A broker's death leaves the streams it led without one for an election
// (3 to 5 s with ftfs's brokers, up to 9 s with a plain nats-server); every
// request reads its session, so without the mirror every request, and
// every reconnecting client's authorization, would wait for the sessions
// stream's election. While a stream has no leader nothing can
// be written to it, so what the mirror holds is current (but for a change
// made the instant before, not yet delivered).
func (s *Server) readKV(ctx context.Context, kv jetstream.KeyValue, mir *mirror, key string) ([]byte, error) {
	v, _, err := s.readKVRevision(ctx, kv, mir, key)
	return v, err
}

// readKVRevision is readKV with the revision read from the bucket's
// leader; 0 when the mirror answered.
func (s *Server) readKVRevision(ctx context.Context, kv jetstream.KeyValue, mir *mirror, key string) ([]byte, uint64, error) {
	if !s.store.ReadOnly() {
		var e jetstream.KeyValueEntry
		read := func(ctx context.Context) (err error) {
			e, err = s.store.KVGetOnce(ctx, kv, key)
			return err
		}
		lctx, cancel := context.WithTimeout(ctx, leaderWait)
		err := read(lctx)
		cancel()
		if err == nil {
			return e.Value(), e.Revision(), nil
		}
		if !store.Unavailable(err) {
			return nil, 0, err
		}
		// Only what the mirror has: it may lack a key written a moment
		// ago (its watch lags, and restarts when its consumer's broker
		// dies), and "no such user" must not be said on a lag.
		if v, ok := mir.get(key); ok && mir.loaded.Load() {
			s.log.Debug("bucket unavailable; answering from its mirror", "bucket", kv.Bucket(), "err", err)
			return v, 0, nil
		}
		if err = s.store.RetryRead(ctx, subjects.KVStream(kv.Bucket()), read); err == nil {
			return e.Value(), e.Revision(), nil
		}
		if !errors.Is(err, errReadOnly) {
			return nil, 0, err
		}
	}
	v, ok := mir.get(key)
	if !ok {
		return nil, 0, jetstream.ErrKeyNotFound
	}
	return v, 0, nil
}

// leaderWait is how long a bucket read waits for its stream's leader before
// the bucket's mirror answers instead.
const leaderWait = time.Second

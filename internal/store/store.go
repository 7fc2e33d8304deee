// Package store makes every JetStream call of a file server, with its
// fault handling: bounded attempts retried through leader elections, reads
// through a stream's leader, and the read-only state storage is in while
// it has no quorum. It knows nothing of users or requests.
package store

import (
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Store is a file server's storage connection and the state its retries
// need.
type Store struct {
	nc  *nats.Conn // storage: JetStream, in subjects.Account
	js  jetstream.JetStream
	log *slog.Logger

	// The files bucket (OpenBuckets): an object store, and its stream,
	// which the file server writes chunks and metas to itself.
	objects      jetstream.ObjectStore
	objectStream jetstream.Stream

	// readOnly is set while JetStream has lost its quorum; readOnlyErr is
	// what a storage call returns meanwhile.
	readOnly    atomic.Bool
	readOnlyErr error
	// quorumSeen is when WatchQuorum last counted enough brokers for a
	// quorum (unix nanoseconds; 0 before the first answer).
	quorumSeen atomic.Int64
	elections  elections
}

// newStore returns a Store calling JetStream through js on the storage
// connection nc. While it is read-only (SetReadOnly), a call that cannot
// reach storage returns readOnlyErr instead of trying again.
func newStore(nc *nats.Conn, js jetstream.JetStream, log *slog.Logger, readOnlyErr error) *Store {
	return &Store{nc: nc, js: js, log: log, readOnlyErr: readOnlyErr}
}

// ReadOnly says whether storage has lost its quorum.
func (st *Store) ReadOnly() bool { return st.readOnly.Load() }

// SetReadOnly sets whether storage has lost its quorum, and returns what
// it was.
func (st *Store) SetReadOnly(readOnly bool) (was bool) { return st.readOnly.Swap(readOnly) }

// QuorumSeen is when WatchQuorum last counted enough brokers for a quorum,
// in unix nanoseconds; 0 before the first such count.
func (st *Store) QuorumSeen() int64 { return st.quorumSeen.Load() }

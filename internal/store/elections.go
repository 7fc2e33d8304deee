package store

import (
	"context"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// Stream leader elections. While a stream has no leader (its broker was
// killed) a storage call on it fails at once or goes unanswered, and the
// retries back off; with a fixed back-off the first one to succeed lands
// up to a back-off after the new leader is elected. JetStream announces
// every election (subjects.StreamLeaderElected): a retry waiting to go
// again goes at that moment instead.

// elections hands out contexts ended at the next stream leader election
// this store hears of: of any stream, or of one. The zero value is ready
// to use.
type elections struct {
	mu      sync.Mutex
	any     *epoch
	streams map[string]*epoch
}

// epoch lasts until the next election.
type epoch struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newEpoch() *epoch {
	ctx, cancel := context.WithCancel(context.Background())
	return &epoch{ctx, cancel}
}

// waitAny returns a context done at the next election of any stream after
// this call.
func (e *elections) waitAny() context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.anyLocked()
}

func (e *elections) anyLocked() context.Context {
	if e.any == nil {
		e.any = newEpoch()
	}
	return e.any.ctx
}

// wait returns a context done at the next election of any stream after
// this call, and one done at the next election of stream.
func (e *elections) wait(stream string) (anyStream, this context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.streams == nil {
		e.streams = map[string]*epoch{}
	}
	if e.streams[stream] == nil {
		e.streams[stream] = newEpoch()
	}
	return e.anyLocked(), e.streams[stream].ctx
}

// elected wakes everything waiting for an election, of stream or of any.
func (e *elections) elected(stream string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.any != nil {
		e.any.cancel()
		e.any = nil
	}
	if ep := e.streams[stream]; ep != nil {
		ep.cancel()
		delete(e.streams, stream)
	}
}

// FollowElections listens for stream leader elections until ctx ends.
// Without it retries still happen, on their back-off.
func (st *Store) FollowElections(ctx context.Context) {
	prefix := strings.TrimSuffix(subjects.StreamLeaderElected("*"), "*")
	sub, err := st.nc.Subscribe(prefix+"*", func(m *nats.Msg) { st.elections.elected(strings.TrimPrefix(m.Subject, prefix)) })
	if err != nil {
		st.log.Warn("cannot follow stream leader elections; retries after one wait for their back-off", "err", err)
		return
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
}

// NextElection returns a context done at the next leader election of any
// stream after this call.
func (st *Store) NextElection() context.Context { return st.elections.waitAny() }

package primary

import (
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

// elections hands out a channel closed at the next stream leader election
// this server hears of. The zero value is ready to use.
type elections struct {
	mu   sync.Mutex
	next chan struct{}
}

// wait returns a channel closed at the next election after this call.
func (e *elections) wait() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.next == nil {
		e.next = make(chan struct{})
	}
	return e.next
}

// elected wakes everything waiting for an election.
func (e *elections) elected() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.next != nil {
		close(e.next)
		e.next = nil
	}
}

// followElections listens for stream leader elections until the server
// stops. Without it retries still happen, on their back-off.
func (s *Server) followElections() {
	sub, err := s.nc.Subscribe(subjects.StreamLeaderElected("*"), func(*nats.Msg) { s.elections.elected() })
	if err != nil {
		s.log.Warn("cannot follow stream leader elections; retries after one wait for their back-off", "err", err)
		return
	}
	<-s.ctx.Done()
	_ = sub.Unsubscribe()
}

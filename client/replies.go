package client

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/ftfs/ftfs/subjects"
)

// replies routes the messages answering requests (replies and keepalives)
// to their callers, through one subscription: a request keeps its reply
// subject across attempts, so an answer to an earlier attempt still counts.
type replies struct {
	prefix string
	sub    *nats.Subscription
	events *nats.Subscription

	mu      sync.Mutex
	waiting map[string]chan *nats.Msg
	gone    chan struct{} // closed, and replaced, when a file server goes
}

func newReplies(nc *nats.Conn) (*replies, error) {
	r := &replies{prefix: nc.NewInbox(), waiting: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(r.prefix+".*", func(m *nats.Msg) {
		r.mu.Lock()
		ch := r.waiting[m.Subject[len(r.prefix)+1:]]
		r.mu.Unlock()
		select {
		case ch <- m:
		default: // a caller gone, or a keepalive it has no room for
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: subscribe to replies: %v", ErrUnavailable, err)
	}
	r.sub = sub
	r.gone = make(chan struct{})
	// A broker's notice that a file server's connection closed: what it
	// held is lost, so whoever waits on an answer asks again now.
	r.events, err = nc.Subscribe(subjects.ServerGone, func(*nats.Msg) {
		r.mu.Lock()
		close(r.gone)
		r.gone = make(chan struct{})
		r.mu.Unlock()
	})
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("%w: subscribe to %s: %v", ErrUnavailable, subjects.ServerGone, err)
	}
	return r, nil
}

// serverGone returns a channel closed when the next file server goes.
func (r *replies) serverGone() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}

// open returns a new reply subject, the channel its messages arrive on,
// and the function that closes it.
func (r *replies) open() (subject string, msgs <-chan *nats.Msg, done func()) {
	token := nuid.Next()
	ch := make(chan *nats.Msg, 8)
	r.mu.Lock()
	r.waiting[token] = ch
	r.mu.Unlock()
	return r.prefix + "." + token, ch, func() {
		r.mu.Lock()
		delete(r.waiting, token)
		r.mu.Unlock()
	}
}

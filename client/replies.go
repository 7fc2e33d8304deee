package client

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// replies routes the messages answering requests (replies and keepalives)
// to their callers, through one subscription: a request keeps its reply
// subject across attempts, so an answer to an earlier attempt still counts.
type replies struct {
	prefix string
	sub    *nats.Subscription

	mu      sync.Mutex
	waiting map[string]chan *nats.Msg
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
	return r, nil
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

package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// ChangeEvent is one change of a file a Watcher delivers, and ChangeOp
// what it did.
type (
	ChangeEvent = subjects.ChangeEvent
	ChangeOp    = subjects.ChangeOp
)

// The ops of a ChangeEvent.
const (
	OpPut    = subjects.OpPut
	OpDelete = subjects.OpDelete
	OpRename = subjects.OpRename
)

// WatchOption configures a watch.
type WatchOption func(*watchOptions)

type watchOptions struct {
	after   uint64
	fromNow bool
}

// WatchAfter starts a watch after the change with sequence seq (an
// event's Seq): the changes after it, none before. 0 asks for every change
// storage keeps (the last change of each name). Without it a watch starts
// from now.
func WatchAfter(seq uint64) WatchOption {
	return func(o *watchOptions) { o.after, o.fromNow = seq, false }
}

// Watcher delivers the changes of the files whose names start with a
// prefix, in the order storage took them, each once, until its context
// ends, Close is called or it fails (Err).
type Watcher struct {
	events chan ChangeEvent
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
	last   uint64
}

// Watch starts watching the changes of the files whose names start with
// prefix (all of them for ""): from now, unless WatchAfter says otherwise;
// "now" is asked of a server before Watch returns, so every change after
// the call is delivered. A server's or broker's death, and a connection
// lost for a while, do not end the watch: it asks the next server from the
// last change it delivered. It ends with ErrWatchBehind when it fell so
// far behind that deletes it has not seen are no longer kept, and with a
// request's error that asking again cannot mend (ErrUnauthorized: the
// session ended; ErrInvalid).
func (c *Client) Watch(ctx context.Context, prefix string, opts ...WatchOption) (*Watcher, error) {
	o := watchOptions{fromNow: true}
	for _, opt := range opts {
		opt(&o)
	}
	if len(prefix) > subjects.MaxNameLen {
		return nil, fmt.Errorf("watch: %w: prefix of %d bytes, more than %d", ErrInvalid, len(prefix), subjects.MaxNameLen)
	}
	after := o.after
	if o.fromNow {
		var r subjects.WatchReply
		if err := c.do(ctx, call{subject: subjects.Watch, body: subjects.WatchRequest{Prefix: prefix, Now: true}, reply: &r}); err != nil {
			return nil, fmt.Errorf("watch %q: %w", prefix, err)
		}
		after = r.Next
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{events: make(chan ChangeEvent), cancel: cancel, done: make(chan struct{}), last: after}
	go func() {
		defer close(w.done)
		defer close(w.events)
		err := c.watch(ctx, prefix, after, w)
		if ctx.Err() == nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// Events delivers the changes; it is closed when the watch ends.
func (w *Watcher) Events() <-chan ChangeEvent { return w.events }

// Err says why the watch ended once Events is closed: nil when its context
// ended or Close was called.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Last is the sequence the watch would resume after: the last change
// delivered, or later when the changes past it were not the watch's.
func (w *Watcher) Last() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Close ends the watch and waits until it has.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

// watchPollBudget bounds one poll, retries on other servers included; a
// poll that runs out of it is asked again.
const watchPollBudget = subjects.MaxWatchWait + 20*time.Second

func (c *Client) watch(ctx context.Context, prefix string, after uint64, w *Watcher) error {
	backoff := 100 * time.Millisecond
	poll := func(req subjects.WatchRequest) (subjects.WatchReply, error) {
		for {
			pctx, cancel := context.WithTimeout(ctx, watchPollBudget)
			var r subjects.WatchReply
			err := c.do(pctx, call{subject: subjects.Watch, body: req, reply: &r})
			cancel()
			if err == nil {
				backoff = 100 * time.Millisecond
				return r, nil
			}
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			if !watchRetryable(err) {
				return r, fmt.Errorf("watch %q after %d: %w", prefix, req.After, err)
			}
			c.opts.log.Debug("watch poll failed; asking again", "after", req.After, "err", err)
			select {
			case <-ctx.Done():
				return r, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
	for {
		r, err := poll(subjects.WatchRequest{Prefix: prefix, After: after, Wait: subjects.MaxWatchWait})
		if err != nil {
			return err
		}
		for _, ev := range r.Events {
			if ev.Seq <= after {
				continue // a server answering twice would not show twice
			}
			select {
			case w.events <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
			after = ev.Seq
			w.setLast(after)
		}
		if r.Next > after {
			after = r.Next
			w.setLast(after)
		}
	}
}

func (w *Watcher) setLast(seq uint64) {
	w.mu.Lock()
	w.last = seq
	w.mu.Unlock()
}

// watchRetryable says whether a failed poll may succeed asked again: the
// servers or storage away, busy or read-only, as opposed to a refusal.
func watchRetryable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return true // no answer: a connection or servers away
	}
	return e.Code.Retryable() || e.Code == subjects.CodeReadOnly
}

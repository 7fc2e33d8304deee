package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrWatchStopped: Follow's stop channel closed.
var ErrWatchStopped = errors.New("watch stopped")

const (
	// followCheckEvery is how often a Follow that has handed over nothing
	// since its last look asks whether the stream holds more for it.
	followCheckEvery = 3 * time.Second
	// followStallAfter is how long a Follow may hand over nothing while
	// the stream holds more for it before it replaces its consumer. Longer
	// than nats.go takes to replace one it has missed two heartbeats of.
	followStallAfter = 10 * time.Second
	// followCheckWait bounds one look at the stream.
	followCheckWait = 3 * time.Second
)

// Follow hands take the last message of every subject of stream that
// matches filter (with after set: every message past stream sequence
// after), then every new one, in stream order, until ctx ends (nil),
// stop closes (ErrWatchStopped) or the consumer fails. An ordered pull
// consumer with 2 s heartbeats: one lost with its broker, or left behind
// by a frozen server, is replaced within seconds, from where it was, so
// that what waits for the index (an upload's open) waits no longer.
//
// nats.go's ordered consumer replaces its consumer itself (missed
// heartbeats, a reconnect), but it asks for the new one under one name
// until that succeeds, holding its lock, reporting nothing: placed on a
// broker that has just died (the cluster not knowing yet, as when the
// follower's own broker is killed and its connection moves at once), the
// new consumer never answers and nothing is handed over until that broker
// returns. So Follow watches for a stall itself (watchStall) and starts a
// new ordered consumer, under a new name, past the last message it handed
// over: none is lost or handed over twice.
func (st *Store) Follow(ctx context.Context, stream, filter string, after uint64, stop <-chan struct{}, take func(md *jetstream.MsgMetadata, m jetstream.Msg)) error {
	f := &follow{st: st, stream: stream, filter: filter, take: take, delivered: after, started: after > 0}
	// Stops of consumers left behind, which nats.go may hold up for as
	// long as one attempt at replacing its consumer takes (seconds).
	var stopping sync.WaitGroup
	defer stopping.Wait()
	for {
		cons, err := f.consume(ctx)
		if err != nil {
			return err
		}
		stalled := make(chan struct{})
		watchCtx, endWatch := context.WithCancel(ctx)
		var watching sync.WaitGroup
		watching.Add(1)
		go func() {
			defer watching.Done()
			if f.watchStall(watchCtx) {
				close(stalled)
			}
		}()
		var end error
		select {
		case <-ctx.Done():
		case <-stop:
			end = ErrWatchStopped
		case <-cons.cc.Closed():
			end = errors.New("consumer closed")
		case <-stalled:
		}
		endWatch()
		watching.Wait()
		// Once stopped, no callback of this consumer may call take: what
		// it feeds (the file server's usage index) may be about to be
		// read afresh, or fed by the next consumer.
		f.mu.Lock()
		cons.stopped = true
		f.mu.Unlock()
		stopping.Add(1)
		go func() {
			defer stopping.Done()
			cons.cc.Stop()
		}()
		select {
		case <-stalled:
		default:
			if ctx.Err() != nil {
				return nil
			}
			return end
		}
		f.mu.Lock()
		from := f.delivered
		f.mu.Unlock()
		st.log.Warn("storage watch handed over nothing while the stream moved on; starting it over where it was",
			"stream", stream, "filter", filter, "delivered", from, "stall", followStallAfter)
	}
}

// follow is one Follow's state across the consumers it goes through.
type follow struct {
	st             *Store
	stream, filter string
	take           func(md *jetstream.MsgMetadata, m jetstream.Msg)

	mu sync.Mutex
	// delivered is the stream sequence of the last message handed to take
	// (the after of Follow before the first). started says a consumer
	// past it is wanted rather than the last message of every subject.
	delivered uint64
	started   bool
	handedAt  time.Time // when take last returned
}

// consumer is one ordered consumer of a follow.
type consumer struct {
	cc      jetstream.ConsumeContext
	stopped bool // under follow.mu
}

// consume starts an ordered consumer past what f has handed over.
func (f *follow) consume(ctx context.Context) (*consumer, error) {
	f.mu.Lock()
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{f.filter}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}
	if f.started {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f.delivered+1
	}
	f.handedAt = time.Now()
	f.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	oc, err := f.st.js.OrderedConsumer(cctx, f.stream, cfg)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", f.stream, err)
	}
	c := &consumer{}
	c.cc, err = oc.Consume(func(m jetstream.Msg) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c.stopped {
			return
		}
		md, err := m.Metadata()
		if err != nil {
			return
		}
		if f.started && md.Sequence.Stream <= f.delivered {
			return // handed over by the consumer this one replaced
		}
		f.take(md, m)
		f.delivered, f.started, f.handedAt = md.Sequence.Stream, true, time.Now()
	}, jetstream.PullExpiry(6*time.Second), jetstream.PullHeartbeat(2*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			f.st.log.Debug("storage watch", "stream", f.stream, "err", err)
		}))
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", f.stream, err)
	}
	return c, nil
}

// watchStall returns true once f has handed nothing over for
// followStallAfter while the stream held a message for it all along;
// false when ctx ends.
func (f *follow) watchStall(ctx context.Context) bool {
	tick := time.NewTicker(followCheckEvery)
	defer tick.Stop()
	var behindSince time.Time // since when the stream has held more, nothing handed over
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		f.mu.Lock()
		delivered, handedAt := f.delivered, f.handedAt
		f.mu.Unlock()
		if time.Since(handedAt) < followCheckEvery {
			behindSince = time.Time{}
			continue
		}
		behind, err := f.behind(ctx, delivered)
		switch {
		case err != nil:
			// Storage itself cannot answer: a new consumer could not
			// either. Look again at the next tick.
			f.st.log.Debug("storage watch: cannot look at the stream", "stream", f.stream, "err", err)
		case !behind:
			behindSince = time.Time{}
		case behindSince.IsZero():
			behindSince = time.Now()
		case time.Since(behindSince) >= followStallAfter-followCheckEvery:
			return true
		}
	}
}

// behind says whether the stream holds a message matching f's filter past
// stream sequence delivered: one message looked up through the leader,
// from delivered on, not every subject of the stream.
func (f *follow) behind(ctx context.Context, delivered uint64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, followCheckWait)
	defer cancel()
	_, err := f.st.LeaderGet(ctx, f.stream, MsgRequest{Seq: delivered + 1, NextFor: f.filter})
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

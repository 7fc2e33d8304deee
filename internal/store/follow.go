package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrWatchStopped: Follow's stop channel closed.
var ErrWatchStopped = errors.New("watch stopped")

// Follow hands take the last message of every subject of stream that
// matches filter (with after set: every message past stream sequence
// after), then every new one, in stream order, until ctx ends (nil),
// stop closes (ErrWatchStopped) or the consumer fails. An ordered pull
// consumer with 2 s heartbeats: one lost with its broker, or left behind
// by a frozen server, is replaced within seconds, from where it was, so
// that what waits for the index (an upload's open) waits no longer.
func (st *Store) Follow(ctx context.Context, stream, filter string, after uint64, stop <-chan struct{}, take func(md *jetstream.MsgMetadata, m jetstream.Msg)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := st.js.OrderedConsumer(cctx, stream, cfg)
	cancel()
	if err != nil {
		return err
	}
	// A callback may still run as Stop returns; once stopped, none may
	// call take: what it feeds (the file server's usage index) may be
	// about to be read afresh.
	var mu sync.Mutex
	stopped := false
	cc, err := cons.Consume(func(m jetstream.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		md, err := m.Metadata()
		if err != nil {
			return
		}
		take(md, m)
	}, jetstream.PullExpiry(6*time.Second), jetstream.PullHeartbeat(2*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			st.log.Debug("storage watch", "stream", stream, "err", err)
		}))
	if err != nil {
		return err
	}
	defer func() {
		cc.Stop()
		mu.Lock()
		stopped = true
		mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return nil
	case <-stop:
		return ErrWatchStopped
	case <-cc.Closed():
		return errors.New("consumer closed")
	}
}

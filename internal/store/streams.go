package store

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamInfo reads the info of stream name, in one attempt: what status
// reports and the replica check reads.
func (st *Store) StreamInfo(ctx context.Context, name string) (*jetstream.StreamInfo, error) {
	stream, err := st.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return stream.CachedInfo(), nil
}

// LastSeq is the sequence of the last message stream name holds, read
// readAttempt at a time.
func (st *Store) LastSeq(ctx context.Context, name string) (uint64, error) {
	var last uint64
	err := st.RetryRead(ctx, name, func(ctx context.Context) error {
		info, err := st.StreamInfo(ctx, name)
		if err == nil {
			last = info.State.LastSeq
		}
		return err
	})
	return last, err
}

// UpdateStream replaces a stream's configuration with cfg, in one
// attempt.
func (st *Store) UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	_, err := st.js.UpdateStream(ctx, cfg)
	return err
}

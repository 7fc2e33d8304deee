package fileserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// leaderGet reads one message of the files bucket's stream through its
// leader (store.Store.LeaderGet).
func (s *Server) leaderGet(ctx context.Context, req store.MsgRequest) (*jetstream.RawStreamMsg, error) {
	return s.store.LeaderGet(ctx, s.filesStream(), req)
}

// filesStream is the name of the files bucket's stream.
func (s *Server) filesStream() string { return s.store.ObjectStreamName() }

func wrapStorage(what string, err error) error {
	if err == nil {
		return nil
	}
	var e *subjects.Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// StorageUnavailable says whether a storage call failed for want of an
// answer (a deadline, no responders, a broker gone) or because JetStream
// is electing a leader: made again, it may succeed.
func StorageUnavailable(err error) bool { return store.Unavailable(err) }

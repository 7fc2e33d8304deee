package primary

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// leaderGet reads one message through the stream leader (the
// STREAM.MSG.GET API). Direct gets, which nats.go prefers when a stream
// allows them, may be answered by a follower that has not yet applied the
// latest writes; the decisions a file server takes (does this name exist,
// which chunk comes next) must see every acknowledged write.
func (s *Server) leaderGet(ctx context.Context, req leaderGetRequest) (*jetstream.RawStreamMsg, error) {
	return s.leaderGetFrom(ctx, s.filesStream(), req)
}

// filesStream is the name of the files bucket's stream.
func (s *Server) filesStream() string { return s.stream.CachedInfo().Config.Name }

// leaderGetFrom is leaderGet on the stream named stream.
func (s *Server) leaderGetFrom(ctx context.Context, stream string, req leaderGetRequest) (*jetstream.RawStreamMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var r struct {
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	err = s.retryRead(ctx, stream, func(ctx context.Context) error {
		resp, err := s.nc.RequestWithContext(ctx, subjects.StreamMsgGet(stream), body)
		if err != nil {
			return err
		}
		r.Message, r.Error = nil, nil
		if err := json.Unmarshal(resp.Data, &r); err != nil {
			return fmt.Errorf("stream message get: %w", err)
		}
		if r.Error != nil && r.Error.Code == 503 {
			// No leader (an election under way): asked again here, at
			// the election, rather than answered to the client, which
			// would ask again on its own back-off.
			return r.Error
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if r.Error != nil {
		if r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, jetstream.ErrMsgNotFound
		}
		return nil, r.Error
	}
	if r.Message == nil {
		return nil, fmt.Errorf("stream message get: empty reply")
	}
	m := &jetstream.RawStreamMsg{Subject: r.Message.Subject, Sequence: r.Message.Seq, Data: r.Message.Data, Time: r.Message.Time, Header: nats.Header{}}
	if len(r.Message.Header) > 0 {
		hm, err := nats.DecodeHeadersMsg(r.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("stream message get: headers: %w", err)
		}
		m.Header = hm
	}
	return m, nil
}

// leaderGetRequest is the STREAM.MSG.GET request: the last message on a
// subject, or the first at or after Seq on NextFor.
type leaderGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

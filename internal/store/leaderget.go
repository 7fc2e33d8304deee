package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// LeaderGet reads one message of stream through its leader (the
// STREAM.MSG.GET API). Direct gets, which nats.go prefers when a stream
// allows them, may be answered by a follower that has not yet applied the
// latest writes; the decisions a file server takes (does this name exist,
// which chunk comes next) must see every acknowledged write.
func (st *Store) LeaderGet(ctx context.Context, stream string, req MsgRequest) (*jetstream.RawStreamMsg, error) {
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
	err = st.RetryRead(ctx, stream, func(ctx context.Context) error {
		resp, err := st.nc.RequestWithContext(ctx, subjects.StreamMsgGet(stream), body)
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

// MsgRequest is the STREAM.MSG.GET request: the last message on a
// subject, or the first at or after Seq on NextFor.
type MsgRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

// LeaderSubjects counts the messages of each subject of stream that
// matches filter, as the stream's leader has them. nats.go's Stream.Info
// takes the first answer, and in a cluster a replica that believes its
// stream leaderless answers too, from its own state, which may lag (a
// restarted broker still catching up). Those answers name no leader and
// are passed over, so the counts are always the leader's.
func (st *Store) LeaderSubjects(ctx context.Context, stream, filter string) (map[string]uint64, error) {
	counts := map[string]uint64{}
	for offset := 0; ; {
		var page streamInfoPage
		err := st.RetryRead(ctx, stream, func(ctx context.Context) (err error) {
			page, err = st.leaderStreamInfo(ctx, stream, streamInfoRequest{Filter: filter, Offset: offset})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("subjects of %s: %w", stream, err)
		}
		maps.Copy(counts, page.State.Subjects)
		offset += len(page.State.Subjects)
		if len(page.State.Subjects) == 0 || offset >= page.Total {
			return counts, nil
		}
	}
}

// leaderStreamInfo asks for stream's info and waits, until ctx ends, for
// the answer of its leader.
func (st *Store) leaderStreamInfo(ctx context.Context, stream string, req streamInfoRequest) (streamInfoPage, error) {
	var page streamInfoPage
	body, err := json.Marshal(req)
	if err != nil {
		return page, err
	}
	sub, err := requestAll(st.nc, subjects.StreamInfo(stream), body)
	if err != nil {
		return page, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return page, err
		}
		page = streamInfoPage{}
		if err := json.Unmarshal(m.Data, &page); err != nil {
			return page, fmt.Errorf("stream info: %w", err)
		}
		switch {
		case page.Error != nil:
			return page, page.Error
		case page.Cluster != nil && page.Cluster.Leader == "":
			continue // a replica's own state, perhaps far behind
		}
		return page, nil
	}
}

// streamInfoRequest and streamInfoPage are the STREAM.INFO request and
// answer, as far as LeaderSubjects reads them.
type streamInfoRequest struct {
	Offset int    `json:"offset,omitempty"`
	Filter string `json:"subjects_filter,omitempty"`
}

type streamInfoPage struct {
	Error   *jetstream.APIError `json:"error"`
	Total   int                 `json:"total"`
	Cluster *struct {
		Leader string `json:"leader"`
	} `json:"cluster"`
	State struct {
		Subjects map[string]uint64 `json:"subjects"`
	} `json:"state"`
}

// requestAll sends a request that several may answer, and returns the
// subscription its answers arrive on; the caller unsubscribes.
func requestAll(nc *nats.Conn, subject string, body []byte) (*nats.Subscription, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	if err := nc.PublishRequest(subject, inbox, body); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return sub, nil
}

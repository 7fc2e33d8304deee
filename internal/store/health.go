package store

// Health: what a file server's write health check asks storage
// (fileserver/metrics.go): how many brokers answer the census, and
// whether a stream has a leader to take a write now.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// BrokerCount is one census: the brokers that answered, and how many of
// the JetStream meta group must be up for it to elect a leader.
type BrokerCount struct {
	Seen   int `json:"seen"`
	Needed int `json:"needed"`
}

// Quorum says whether enough brokers answered for a quorum.
func (c BrokerCount) Quorum() bool { return c.Seen >= c.Needed }

// CountBrokers asks every broker on subjects.BrokerCensus through census
// (a file server's front connection) and counts those that answer within
// wait. Only brokers census's broker can reach answer. An error: the
// question could not be sent, or no broker answered, not even census's
// own (frozen or dying), which says nothing of the others.
func CountBrokers(census *nats.Conn, wait time.Duration) (BrokerCount, error) {
	sub, err := requestAll(census, subjects.BrokerCensus, nil)
	if err != nil {
		return BrokerCount{}, fmt.Errorf("broker census: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	up := map[string]bool{}
	need := 0
	deadline := time.Now().Add(wait)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		var rep subjects.BrokerReport
		if json.Unmarshal(m.Data, &rep) != nil || rep.Name == "" {
			continue
		}
		up[rep.Name] = true
		need = max(need, rep.QuorumNeeded, rep.MetaSize/2+1)
	}
	if len(up) == 0 {
		return BrokerCount{}, errors.New("broker census: no broker answered")
	}
	return BrokerCount{Seen: len(up), Needed: need}, nil
}

// StreamLeader names the broker leading stream, asking JetStream (the
// stream info API) within ctx's deadline. A stream without a leader is an
// error: JetStream does not answer for it, or answers that it is
// unavailable; "" with no error is a stream that answered without naming
// a leader.
func (st *Store) StreamLeader(ctx context.Context, stream string) (string, error) {
	s, err := st.js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("stream info %s: %w", stream, err)
	}
	ci := s.CachedInfo().Cluster
	if ci == nil {
		return "", nil
	}
	if ci.Leader == "" {
		return "", fmt.Errorf("stream %s: no leader", stream)
	}
	return ci.Leader, nil
}

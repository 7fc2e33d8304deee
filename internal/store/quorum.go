package store

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
)

// Quorum loss. With two of three brokers down JetStream can neither store
// nor read through its leaders. A file server counts the brokers that
// answer its census (subjects.BrokerCensus) and, while too few are up to
// elect a leader, its store is read-only: a storage call that cannot reach
// storage returns the read-only error at once instead of trying again.

// quorumPoll is how often a file server counts the brokers it can reach.
const quorumPoll = 500 * time.Millisecond

// quorumLostAfter is how many counts in a row must find too few brokers
// before a file server turns read-only: two seconds. One is not enough: a
// broker busy for a moment misses its answer, and a broker thawed after a
// freeze reaches the others again only once its routes are back. JetStream
// itself is no quicker witness: a survivor answers as if the cluster were
// whole until its meta group has gone without a leader for about ten
// seconds, while the brokers' routes close the moment a broker dies.
const quorumLostAfter = 4

// WatchQuorum keeps the read-only state (ReadOnly) up to date until ctx
// ends, counting the brokers that answer the census sent on census: the
// file server's front connection. A count made while that connection is
// down (its broker died, it is moving to another) says nothing and leaves
// the last state.
func (st *Store) WatchQuorum(ctx context.Context, census *nats.Conn) {
	tick := time.NewTicker(quorumPoll)
	defer tick.Stop()
	noQuorum := 0 // counts in a row with too few brokers
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		reachable, err := quorumReachable(census)
		switch {
		case err != nil || !census.IsConnected():
			continue
		case reachable:
			noQuorum = 0
			st.quorumSeen.Store(time.Now().UnixNano())
		default:
			noQuorum++
		}
		lost := noQuorum >= quorumLostAfter
		if lost != (noQuorum > 0) {
			continue // not sure yet: keep the state
		}
		if st.readOnly.Swap(lost) != lost {
			if lost {
				st.log.Warn("storage quorum lost: read-only until a broker returns")
			} else {
				st.log.Info("storage quorum back: writable")
			}
		}
	}
}

// quorumReachable says whether enough brokers answer (each for itself, on
// subjects.BrokerCensus) for the meta group to elect a leader. Only
// brokers the broker of census, this server's front connection, can reach
// answer (the brokers answer in the users' account); with brokers killed,
// not cut off, the storage connection's broker sees the same. An error:
// the question could not be sent, or no broker answered.
func quorumReachable(census *nats.Conn) (bool, error) {
	count, err := CountBrokers(census, 300*time.Millisecond)
	if err != nil {
		// Not even the broker the question went through answered: an
		// error, which leaves the read-only state as it is, not a count
		// of none.
		return false, err
	}
	return count.Quorum(), nil
}

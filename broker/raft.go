package broker

import (
	"time"
	_ "unsafe" // go:linkname: nats-server has no option for raft's election timeout

	_ "github.com/nats-io/nats-server/v2/server" // the variables below live there
)

// How long a stream stays without a leader after its leader's broker is
// killed. A follower starts an election once it has heard nothing from the
// leader for a random election timeout; nats-server draws it from 4–9 s,
// and a follower still applying what it was sent waits more, so the files
// stream measured 8.6 and 10.5 s without a leader in the fault matrix,
// while every upload and delete waited. ftfs's brokers are one site on a
// fast network: a window of 3–5 s keeps three raft heartbeats (1 s,
// unchanged) of margin before a follower gives up on a slow leader, and
// bounds the wait at about half. nats-server offers no setting for it
// (its own test suite sets these variables lower still, 1.5–3.5 s), so
// they are set here, once, before any broker of this process starts; a
// nats-server release that renames them fails to link, not silently.
const (
	electionTimeoutMin = 3 * time.Second
	electionTimeoutMax = 5 * time.Second
)

//go:linkname raftMinElectionTimeout github.com/nats-io/nats-server/v2/server.minElectionTimeout
var raftMinElectionTimeout time.Duration

//go:linkname raftMaxElectionTimeout github.com/nats-io/nats-server/v2/server.maxElectionTimeout
var raftMaxElectionTimeout time.Duration

func init() {
	raftMinElectionTimeout, raftMaxElectionTimeout = electionTimeoutMin, electionTimeoutMax
}

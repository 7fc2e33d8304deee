package broker

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// A frozen file server (SIGSTOP, a paused VM, a wedged process) keeps its
// connection and its share of the queue group: the requests the broker
// hands it go unanswered until the broker drops it for missed pings, 6 to
// 8 s with the 2 s pings. So each broker watches the file servers
// connected to it more closely: it pings each one's service instance
// (micro's per-instance ping subject, answered by the server's own
// connection), and closes the connection of one that has answered nothing
// for frozenAfter while the broker itself kept answering. The closing is
// announced on subjects.ServerGone, clients send their requests again, now
// to a server that answers; a server that thaws reconnects and serves
// again, its uploads fenced off (primary's writer) if another took them
// over.

const (
	// probeEvery is how often each file server is pinged.
	probeEvery = 500 * time.Millisecond
	// frozenAfter is how long a file server may go without answering.
	// Two seconds are a long pause for a live process answering from its
	// connection's own goroutine, and with the client's own second of
	// silence keep a frozen server's requests under 5 s.
	frozenAfter = 2 * time.Second
)

// fileServerConn is a file server's connection to this broker.
type fileServerConn struct {
	name     string
	ping     string    // its service instance's ping subject
	answered time.Time // last answer, or when first seen
}

// startWatchdog starts watching the file servers connected to this broker,
// until stopWatchdog.
func (b *Broker) startWatchdog() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.stopWatch = func() { cancel(); <-done }
	go func() {
		defer close(done)
		b.watchFileServers(ctx)
	}()
}

func (b *Broker) stopWatchdog() {
	if b.stopWatch != nil {
		b.stopWatch()
	}
}

func (b *Broker) watchFileServers(ctx context.Context) {
	// The broker's own round trip, the control: a broker stalled itself
	// (its disk, its CPU) hears no file server either, and closing their
	// connections would only add their reconnection to its load.
	control := b.status.nc.NewRespInbox()
	sub, err := b.status.nc.Subscribe(control, func(m *nats.Msg) { _ = m.Respond(nil) })
	if err != nil {
		b.log.Warn("frozen file servers not watched: they leave when pings miss", "err", err)
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	watched := map[uint64]*fileServerConn{}
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, probeEvery)
		_, err := b.status.nc.RequestWithContext(pctx, control, nil)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Stalled: nobody's silence counts until the broker answers.
			for _, w := range watched {
				w.answered = time.Now()
			}
			continue
		}
		now := time.Now()
		current := b.fileServerConns()
		for cid := range watched {
			if _, ok := current[cid]; !ok {
				delete(watched, cid)
			}
		}
		for cid, c := range current {
			w := watched[cid]
			if w == nil {
				c.answered = now
				watched[cid], w = c, c
			}
			pctx, cancel := context.WithTimeout(ctx, probeEvery)
			_, err := b.status.nc.RequestWithContext(pctx, w.ping, nil)
			cancel()
			if err == nil {
				w.answered = time.Now()
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if silent := time.Since(w.answered); silent >= frozenAfter {
				b.log.Warn("file server not answering; closing its connection so that its requests go to another",
					"connection", w.name, "cid", cid, "silent", silent.Round(time.Millisecond))
				if err := b.srv.DisconnectClientByID(cid); err != nil {
					b.log.Warn("close a frozen file server's connection", "cid", cid, "err", err)
				}
				delete(watched, cid)
			}
		}
	}
}

// fileServerConns lists the file servers' connections to this broker, by
// connection ID, with the ping subject of each one's service instance: a
// front connection holds the instance's micro subjects, a storage
// connection its subjects.InstanceMark. Either may be here without the
// other (each picks its broker), and both go when their process freezes.
func (b *Broker) fileServerConns() map[uint64]*fileServerConn {
	conns := map[uint64]*fileServerConn{}
	for _, w := range []struct{ user, prefix string }{
		{subjects.FrontUser, subjects.DiscoveryPing + "."},
		{subjects.ServiceUser, subjects.InstanceMark("")},
	} {
		cz, err := b.srv.Connz(&server.ConnzOptions{User: w.user, Subscriptions: true, Limit: 1 << 16})
		if err != nil {
			continue
		}
		for _, ci := range cz.Conns {
			if ci.Name != subjects.ConnNamePrimary && ci.Name != subjects.ConnNameBackup {
				continue
			}
			for _, sub := range ci.Subs {
				if id, ok := strings.CutPrefix(sub, w.prefix); ok && id != "" && !strings.Contains(id, ".") {
					conns[ci.Cid] = &fileServerConn{name: ci.Name, ping: subjects.DiscoveryPing + "." + id}
					break
				}
			}
		}
	}
	return conns
}

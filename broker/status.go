package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// statusResponder answers subjects.BrokerInfo for its broker. It runs in
// the broker process, so a broker is reported even when no file server is
// connected to it, and while JetStream has no quorum: the report reads the
// embedded server's own state and never waits on JetStream.
type statusResponder struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
	stop   sync.Once
}

// startStatus connects in-process as the front identity, in the users'
// account, and answers subjects.BrokerInfo until stopStatus. The same
// connection pings the file servers (watchdog.go), announces their
// departures (events.go) and cuts upload connections (uploads.go).
func (b *Broker) startStatus(servicePassword string) error {
	if servicePassword == "" {
		return errors.New("no service password to connect with")
	}
	nc, err := nats.Connect("",
		nats.InProcessServer(b.srv),
		nats.UserInfo(subjects.FrontUser, servicePassword),
		nats.Name("ftfs-broker-status"),
		nats.Timeout(10*time.Second),
		// The pipe can only break while the server shuts down, and then
		// stopStatus closes the connection anyway.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
	)
	if err != nil {
		return fmt.Errorf("connect in-process: %w", err)
	}
	// No queue group: every broker must answer the one request.
	requests := make(chan *nats.Msg, 64)
	for _, subject := range []string{subjects.BrokerInfo, subjects.BrokerCensus} {
		if _, err := nc.ChanSubscribe(subject, requests); err != nil {
			nc.Close()
			return fmt.Errorf("subscribe %s: %w", subject, err)
		}
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		nc.Close()
		return fmt.Errorf("flush subscriptions: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &statusResponder{nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		b.serveStatus(ctx, requests)
	}()
	b.status = r
	return nil
}

func (b *Broker) serveStatus(ctx context.Context, requests <-chan *nats.Msg) {
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return
		case m = <-requests:
		}
		if m.Subject != subjects.BrokerCensus && !subjects.OwnInbox(m.Subject, m.Reply) {
			// The subject names the user who asked (the broker let
			// nobody else publish it): an answer anywhere but that
			// user's inbox would go to somebody else.
			b.log.Warn("broker status request refused: reply subject outside the user's inbox", "subject", m.Subject, "reply", m.Reply)
			continue
		}
		data, err := json.Marshal(b.report())
		if err != nil {
			b.log.Error("broker status: encode report", "err", err)
			continue
		}
		if err := m.Respond(data); err != nil {
			b.log.Debug("broker status: reply", "err", err)
		}
	}
}

// stopStatus ends the responder and waits for it; safe to call twice, or
// when it never started.
func (b *Broker) stopStatus() {
	r := b.status
	if r == nil {
		return
	}
	r.stop.Do(func() {
		r.cancel()
		<-r.done
		r.nc.Close()
	})
}

// report describes this broker from its embedded server.
func (b *Broker) report() subjects.BrokerReport {
	srv := b.srv
	rep := subjects.BrokerReport{
		Name:        srv.Name(),
		URL:         srv.ClientURL(),
		Cluster:     srv.ClusterName(),
		Version:     server.VERSION,
		Started:     b.started,
		Connections: srv.NumClients(),
		JetStream:   srv.JetStreamEnabled(),
	}
	if !rep.JetStream {
		return rep
	}
	if !srv.JetStreamIsClustered() {
		rep.MetaLeader = rep.Name // alone, it decides every placement itself
		return rep
	}
	// Jsz reads local state only: it answers at once without a quorum.
	jsz, err := srv.Jsz(&server.JSzOptions{})
	if err != nil {
		rep.Error = fmt.Sprintf("jetstream state: %v", err)
		return rep
	}
	if meta := jsz.Meta; meta != nil {
		rep.MetaLeader = meta.Leader
		rep.MetaSize, rep.QuorumNeeded = meta.Size, meta.QuorumNeeded
		for _, p := range meta.Replicas {
			if p == nil {
				continue
			}
			rep.MetaPeers = append(rep.MetaPeers, subjects.MetaPeer{Name: p.Name, Current: p.Current, Offline: p.Offline})
		}
	}
	return rep
}

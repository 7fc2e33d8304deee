package broker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// A file server killed in the middle of a request takes the request with
// it, and its client would only notice by the silence (a second). The
// broker sees the connection close at once: it announces it on
// subjects.ServerGone, and clients send what they had in flight again.

// disconnectEvent is the part of nats-server's DisconnectEventMsg read here.
type disconnectEvent struct {
	Server struct {
		Name string `json:"name"`
	} `json:"server"`
	Client struct {
		Name string `json:"name"`
		User string `json:"user"`
	} `json:"client"`
}

// startEvents connects in-process to the system account and turns the
// disconnection of a file server from this broker into a ServerGone notice,
// published with the status responder's service connection.
func (b *Broker) startEvents(password string) error {
	nc, err := nats.Connect("",
		nats.InProcessServer(b.srv),
		nats.UserInfo(subjects.BrokerEventsUser, password),
		nats.Name(subjects.BrokerEventsUser),
		nats.Timeout(10*time.Second),
		nats.MaxReconnects(-1),
	)
	if err != nil {
		return fmt.Errorf("connect in-process to the system account: %w", err)
	}
	out := b.status.nc
	self := b.srv.Name()
	// A file server takes requests on its front connection, in the
	// users' account: its closing loses them.
	_, err = nc.Subscribe(subjects.DisconnectEvents(subjects.UsersAccount), func(m *nats.Msg) {
		var ev disconnectEvent
		if json.Unmarshal(m.Data, &ev) != nil || ev.Server.Name != self || ev.Client.User != subjects.FrontUser {
			return // another broker announces its own
		}
		if ev.Client.Name != subjects.ConnNamePrimary && ev.Client.Name != subjects.ConnNameBackup {
			return
		}
		body, _ := json.Marshal(subjects.ServerGoneNotice{Connection: ev.Client.Name, Broker: self})
		if err := out.Publish(subjects.ServerGone, body); err != nil {
			b.log.Warn("announce a file server's departure", "err", err)
			return
		}
		b.log.Info("file server disconnected; clients told to send again", "connection", ev.Client.Name)
	})
	if err != nil {
		nc.Close()
		return fmt.Errorf("subscribe to disconnect events: %w", err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		nc.Close()
		return fmt.Errorf("subscribe to disconnect events: %w", err)
	}
	b.events = nc
	return nil
}

// stopEvents closes the events connection, which ends its subscription.
func (b *Broker) stopEvents() {
	if b.events != nil {
		b.events.Close()
	}
}

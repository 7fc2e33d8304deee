package broker

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// A direct upload's connection publishes into the files stream itself, and
// a client is free to leave out the headers by which the stream would
// refuse its chunks once another server took the upload over. So the
// broker, which carries every byte, is the one to stop it:
//
//   - when a file server says the upload ended (committed, aborted,
//     dropped: subjects.UploadEnded), every connection of that upload is
//     closed at once, and again if one turns up later (authorized just
//     before the end, its auth callout answer still on its way); the
//     reconnect is refused by the auth callout;
//   - a connection that has published more than its upload's size allows
//     (subjects.UploadConnLimit, carried in its user name) is closed, and
//     the file servers are told (subjects.UploadOverrun) to drop the upload
//     and purge what it stored.

const (
	// uploadGuardEvery is how often the upload connections are looked at:
	// at a loopback's 400 MB/s, 40 MB pass in that time.
	uploadGuardEvery = 100 * time.Millisecond
	// endedKept is how long an ended upload's connections are still cut
	// when they turn up: longer than an auth callout may take.
	endedKept = 2 * time.Minute
)

// uploadGuard is the state of the broker's watch over upload connections.
type uploadGuard struct {
	mu      sync.Mutex
	ended   map[string]time.Time // upload ID -> when it was said to end
	overrun map[string]time.Time // upload ID -> when it was announced
}

// startUploadGuard starts watching this broker's upload connections until
// the stop it returns is called.
func (b *Broker) startUploadGuard() (stop func(), err error) {
	g := &uploadGuard{ended: map[string]time.Time{}, overrun: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := b.status.nc.Subscribe(subjects.UploadEnded, func(m *nats.Msg) {
		id := string(m.Data)
		if id == "" {
			return
		}
		g.mu.Lock()
		g.ended[id] = time.Now()
		g.mu.Unlock()
		b.cutUploads(g)
	})
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(uploadGuardEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				b.cutUploads(g)
			}
		}
	}()
	return func() {
		_ = sub.Unsubscribe()
		cancel()
		<-done
	}, nil
}

// cutUploads closes the upload connections of ended uploads and those past
// their limit.
func (b *Broker) cutUploads(g *uploadGuard) {
	acc, err := b.srv.LookupAccount(subjects.UploadsAccount)
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, at := range g.ended {
		if time.Since(at) > endedKept {
			delete(g.ended, id)
		}
	}
	for id, at := range g.overrun {
		if time.Since(at) > endedKept {
			delete(g.overrun, id)
		}
	}
	if err != nil || acc.NumLocalConnections() == 0 {
		return
	}
	cz, err := b.srv.Connz(&server.ConnzOptions{Account: subjects.UploadsAccount, Username: true, Limit: 1 << 16})
	if err != nil {
		return
	}
	type upload struct {
		cids  []uint64
		bytes int64
		limit int64
		owner string
	}
	uploads := map[string]*upload{}
	for _, ci := range cz.Conns {
		owner, id, limit, ok := subjects.ParseUploadConnUser(ci.AuthorizedUser)
		if !ok {
			// Only the auth callout places connections here, always with
			// such a name: anything else has no business in the account.
			b.log.Warn("connection without an upload in the uploads account; closed", "cid", ci.Cid, "user", ci.AuthorizedUser)
			_ = b.srv.DisconnectClientByID(ci.Cid)
			continue
		}
		u := uploads[id]
		if u == nil {
			u = &upload{limit: limit, owner: owner}
			uploads[id] = u
		}
		u.cids = append(u.cids, ci.Cid)
		u.bytes += ci.InBytes
	}
	for id, u := range uploads {
		_, ended := g.ended[id]
		over := u.bytes > u.limit
		if !ended && !over {
			continue
		}
		for _, cid := range u.cids {
			_ = b.srv.DisconnectClientByID(cid)
		}
		if ended {
			b.log.Info("upload ended; its connections closed", "upload", id, "user", u.owner, "connections", len(u.cids))
			continue
		}
		b.log.Warn("upload connection published more than its upload's size; closed, and the upload dropped",
			"upload", id, "user", u.owner, "bytes", u.bytes, "limit", u.limit)
		if _, told := g.overrun[id]; !told {
			g.overrun[id] = time.Now()
			if err := b.status.nc.Publish(subjects.UploadOverrun, []byte(id)); err != nil {
				b.log.Warn("tell the file servers of an upload overrun", "upload", id, "err", err)
			}
		}
	}
}

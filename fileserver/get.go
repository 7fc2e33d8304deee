package fileserver

// Small files in one request (subjects.Get). A download costs two requests
// (Stat, then a batch) and reads the session, the user and the file's meta
// for each; a Get answers the file's info and, for a file of one chunk, its
// content at once. Larger files are downloaded by batches after it, which
// JetStream sends straight to the client.

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

func (s *Server) get(c *call) (any, error) {
	o, err := s.namedObject(c, mayRead, "read")
	if err != nil {
		return nil, err
	}
	var content []byte
	if o.info.Chunks == 1 {
		if err := s.admitTransfer(c); err != nil {
			return nil, err
		}
		chunk, err := s.leaderGet(c.ctx, store.MsgRequest{Seq: 1, NextFor: s.chunkSubject(o.info.NUID)})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// Replaced or deleted since its meta was read: its chunks
			// are purged.
			return nil, subjects.Errorf(subjects.CodeConflict, "%q changed while it was read; try again", o.info.Name)
		}
		if err != nil {
			return nil, wrapStorage(fmt.Sprintf("read %q", o.info.Name), err)
		}
		content = chunk.Data
	}
	return s.sendFile(c, fileInfo(o.info), content)
}

// sendFile answers a Get: fi in HeaderFile, content as the body.
// authenticate has checked that the reply subject is the user's inbox.
func (s *Server) sendFile(c *call, fi subjects.FileInfo, content []byte) (any, error) {
	info, err := json.Marshal(fi)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(c.req.Reply())
	m.Header.Set(subjects.HeaderFile, string(info))
	m.Data = content
	if err := s.front.PublishMsg(m); err != nil {
		return nil, fmt.Errorf("send %q: %w", fi.Name, err)
	}
	s.countServed("get", int64(len(content)))
	return noReply{}, nil
}

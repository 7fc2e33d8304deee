package fileserver

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// readable serves a read from storage, or while storage is read-only from
// the fallback replica; a server without one says CodeReadOnly, and the
// client asks the replica subjects instead.
func (s *Server) readable(fromStorage, fromReplica op) op {
	return func(c *call) (any, error) {
		if !s.store.ReadOnly() {
			return fromStorage(c)
		}
		if s.cfg.Fallback == nil {
			return nil, errReadOnly
		}
		return fromReplica(c)
	}
}

// replicaLag is how far behind storage the replica is, as of the last
// time storage was seen with its quorum (now, while it has it), or its
// watch's last delivery if later: no write could have been made since.
func (s *Server) replicaLag() *subjects.ReplicaLag {
	lag := s.cfg.Fallback.Lag()
	asOf := time.Now().UTC()
	if seen := s.store.QuorumSeen(); s.store.ReadOnly() && seen != 0 {
		asOf = time.Unix(0, seen).UTC()
		if lag.AsOf.After(asOf) {
			asOf = lag.AsOf
		}
	}
	lag.AsOf = asOf
	return &lag
}

func (s *Server) replicaList(c *call) (any, error) {
	r, err := decodeCall[subjects.ListRequest](c)
	if err != nil {
		return nil, err
	}
	v, err := s.accessOf(c)
	if err != nil {
		return nil, err
	}
	reply := pageVisible(r, s.cfg.Fallback.List(), v.visible())
	reply.Replica = s.replicaLag()
	return reply, nil
}

func (s *Server) replicaStat(c *call) (any, error) {
	f, fi, err := s.namedReplica(c, mayRead|mayListName, "see")
	if err != nil {
		return nil, err
	}
	f.Close()
	fi.Replica = s.replicaLag()
	return fi, nil
}

// namedReplica opens the replica's copy of the file a NameRequest names,
// provided the caller has one of anyOf on it (namedObject).
func (s *Server) namedReplica(c *call, anyOf rights, doing string) (*os.File, subjects.FileInfo, error) {
	r, err := decodeCall[subjects.NameRequest](c)
	if err != nil {
		return nil, subjects.FileInfo{}, err
	}
	if err := s.needAccess(c, r.Name, anyOf, doing); err != nil {
		return nil, subjects.FileInfo{}, err
	}
	return s.cfg.Fallback.Open(r.Name)
}

// replicaGet answers a Get from the replica: the file's info, and its
// content when it is one chunk or less.
func (s *Server) replicaGet(c *call) (any, error) {
	f, fi, err := s.namedReplica(c, mayRead, "read")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi.Replica = s.replicaLag()
	var content []byte
	if fi.Size <= subjects.ChunkSize {
		content = make([]byte, fi.Size)
		if _, err := io.ReadFull(f, content); err != nil {
			return nil, fmt.Errorf("read replica of %q: %w", fi.Name, err)
		}
	}
	return s.sendFile(c, fi, content)
}

// replicaDownload sends up to Max chunks of the replica's copy from
// r.Offset, then the end-of-batch status, as a JetStream direct get would.
func (s *Server) replicaDownload(c *call) (any, error) {
	r, err := decodeCall[subjects.DownloadRequest](c)
	if err != nil {
		return nil, err
	}
	if err := s.needAccess(c, r.Name, mayRead, "read"); err != nil {
		return nil, err
	}
	f, fi, err := s.cfg.Fallback.Open(r.Name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Version != r.Version {
		return nil, subjects.Errorf(subjects.CodeConflict, "%q changed since the download started (version %s is now %s)", r.Name, r.Version, fi.Version)
	}
	if r.Offset < 0 || r.Offset > fi.Size {
		return nil, subjects.Errorf(subjects.CodeInvalid, "offset %d outside %q (%d bytes)", r.Offset, r.Name, fi.Size)
	}
	if r.Max <= 0 || r.Max > subjects.DownloadBatch {
		r.Max = subjects.DownloadBatch
	}
	buf := make([]byte, subjects.ChunkSize)
	off := r.Offset
	for i := 0; i < r.Max && off < fi.Size; i++ {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), fi.Size-off)], off)
		if err != nil {
			return nil, fmt.Errorf("read replica of %q: %w", r.Name, err)
		}
		m := nats.NewMsg(c.req.Reply())
		m.Header.Set(subjects.HeaderOffset, strconv.FormatInt(off, 10))
		m.Data = buf[:n]
		// PublishMsg copies the data out before it returns: buf is free.
		if err := s.front.PublishMsg(m); err != nil {
			return nil, fmt.Errorf("send chunk: %w", err)
		}
		off += int64(n)
		s.countServed("replica", int64(n))
	}
	end := nats.NewMsg(c.req.Reply())
	end.Header.Set(subjects.HeaderStatus, "204")
	if err := s.front.PublishMsg(end); err != nil {
		return nil, fmt.Errorf("send end of batch: %w", err)
	}
	return noReply{}, nil
}

package fileserver

// Small files in one request (subjects.Put). An upload costs a small file
// three requests and a dozen storage calls (open: the upload record; the
// chunk; commit: the record read, claimed and marked, the meta written),
// too many for many small files; a put costs one request.
// A put carries the whole content: the server checks it, stores it as the
// one chunk of a new version, then writes the meta message, which makes it
// visible. There is nothing to resume: a put whose server dies is sent
// again whole, and the meta's request mark (stamped, doneBy) answers a
// retry of a put that got through with the file it stored. Like every
// mutating request a put runs at most once per request ID (requestMeta):
// the mark alone cannot stop a late copy from storing the file again
// after its delete.

import (
	"context"
	"crypto/sha256"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

func (s *Server) put(c *call) (any, error) {
	var r subjects.PutRequest
	if err := decode([]byte(c.req.Headers().Get(subjects.HeaderPut)), &r); err != nil {
		return nil, err
	}
	if err := subjects.ValidName(r.Name); err != nil {
		return nil, err
	}
	data := c.req.Data()
	s.countReceived("put", int64(len(data)))
	if int64(len(data)) != r.Size {
		return nil, subjects.Errorf(subjects.CodeIntegrity, "put of %q: announced %d bytes, sent %d; nothing was stored", r.Name, r.Size, len(data))
	}
	h := sha256.New()
	h.Write(data)
	digest := digestOf(h)
	if digest != r.Digest {
		return nil, subjects.Errorf(subjects.CodeIntegrity, "put of %q: digest mismatch (server %s, client %s); nothing was stored", r.Name, digest, r.Digest)
	}
	if err := s.checkFileSize(r.Name, r.Size); err != nil {
		return nil, err
	}
	// It leaves no unfinished upload (Config.MaxOpenUploads).
	if err := s.admitTransfer(c); err != nil {
		return nil, err
	}
	id := nuid.Next()
	chunks := uint32(0)
	if r.Size > 0 {
		chunks = 1
	}
	var stored chan error
	if e, ok := c.req.(*earlyPut); ok && e.size == r.Size && e.taken.CompareAndSwap(false, true) {
		id, stored = e.id, e.stored // stored while the session was checked
	}
	info := stamped(c, jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{
			Name:     r.Name,
			Metadata: map[string]string{subjects.MetaOwner: c.user},
			Opts:     &jetstream.ObjectMetaOptions{ChunkSize: subjects.ChunkSize},
		},
		Bucket:  s.cfg.Bucket,
		NUID:    id,
		Size:    uint64(r.Size),
		ModTime: time.Now().UTC(),
		Chunks:  chunks,
		Digest:  digest,
	})
	rec := uploadRecord{ID: id, Name: r.Name, Owner: c.user, Bytes: r.Size, Overwrite: r.Overwrite}
	// The content is stored while the name's meta is read: a put is
	// mostly round trips to storage, and the content is harmless until a
	// meta names it (if none ever does, it is purged).
	if chunks > 0 && stored == nil {
		stored = make(chan error, 1)
		go func() { stored <- s.storeWhole(c.ctx, id, data) }() // waited for below
	}
	contentStored := func() error {
		if stored == nil {
			return nil
		}
		err := <-stored
		stored = nil
		if err != nil {
			s.purgeLater(id, 0) // stored or not: no meta names it
		}
		return err
	}
	// drop purges the content once it is sure no meta points at it.
	drop := func() {
		if contentStored() == nil && chunks > 0 {
			s.purgeLater(id, 0)
		}
	}
	for attempt, fresh := 0, false; ; fresh = true {
		cur, err := s.lookupObject(c.ctx, r.Name, fresh)
		if err != nil {
			drop()
			return nil, err
		}
		if cur.live() && doneBy(c, cur) {
			drop() // this put got through before (here, or on a server gone since)
			return fileInfo(cur.info), nil
		}
		if err := s.mayReplace(c, rec, cur); err != nil {
			if !fresh {
				continue // the index may lag: look in storage
			}
			drop()
			return nil, err
		}
		if err := contentStored(); err != nil {
			return nil, err
		}
		fi, done, err := s.commit(c, info, cur, byRequest)
		if err == errConflict && attempt < 3 {
			attempt++
			continue // the name changed meanwhile: look again
		}
		if err == errConflict {
			drop() // no meta written
		}
		if err != nil {
			// Any other failure may have stored the meta all the same
			// (its answer lost): the content stays.
			return nil, err
		}
		if done {
			return s.putDoneBefore(c, info, drop), nil
		}
		return fi, nil
	}
}

// putDoneBefore answers a put whose meta an earlier run of the same
// request wrote (requestMeta): this run's own attempt whose acknowledgement
// was lost, or a copy run elsewhere. Unless that meta names this run's
// content, the content goes (drop). The answer is the file as it stands
// when it is still the request's; if the name has changed since, the file
// as this run would have stored it.
func (s *Server) putDoneBefore(c *call, info jetstream.ObjectInfo, drop func()) subjects.FileInfo {
	cur, err := s.getObject(c.ctx, info.Name)
	if err == nil && cur.live() && cur.info.NUID == info.NUID {
		return fileInfo(cur.info)
	}
	drop()
	if err == nil && cur.live() && doneBy(c, cur) {
		return fileInfo(cur.info)
	}
	return fileInfo(info)
}

// earlyPut is a put request whose content is being stored while its
// session is checked (putEarly).
type earlyPut struct {
	micro.Request
	id     string     // the version the content is stored as
	size   int64      // its bytes
	stored chan error // the store's outcome, once
	taken  atomic.Bool
}

// putEarly starts storing a put's content as the request arrives, at the
// same time as its session is checked and its name looked up: a small put
// is a chain of storage round trips (session, content, meta), and the
// content needs none of the others. Until a meta names it the content is
// invisible; when the put does not take it (no valid session, storage
// read-only, a refusal before the write), it is purged. Only the request's
// own shape is checked first: the broker let only its user publish it,
// and it carries at most MaxPutSize bytes.
func (s *Server) putEarly(h func(micro.Request)) func(micro.Request) {
	return func(req micro.Request) {
		var r subjects.PutRequest
		data := req.Data()
		if len(data) == 0 || decode([]byte(req.Headers().Get(subjects.HeaderPut)), &r) != nil ||
			r.Size != int64(len(data)) { // decode validated the rest
			h(req) // the put explains what is wrong
			return
		}
		e := &earlyPut{Request: req, id: nuid.Next(), size: r.Size, stored: make(chan error, 1)}
		ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
		go func() { // waited for by the put, or below
			defer cancel()
			e.stored <- s.storeWhole(ctx, e.id, data)
		}()
		h(e)
		if e.taken.CompareAndSwap(false, true) {
			<-e.stored // stored or not: nothing names it
			s.purgeLater(e.id, 0)
		}
	}
}

// storeWhole stores the content of a small file as the one chunk of
// version id.
func (s *Server) storeWhole(ctx context.Context, id string, data []byte) error {
	m := nats.NewMsg(s.chunkSubject(id))
	m.Data = data
	// A repeat of an attempt whose answer was lost is answered with the
	// first one's sequence (message ID); the expected sequence keeps
	// anything else off a subject only this request writes.
	_, err := s.store.Publish(ctx, m, store.Expect{MsgID: id + ".0"})
	return wrapStorage("store file content", err)
}

package fileserver

// Commit: a version whose content is stored becomes the file of its name
// when its meta message is written. Three requests get there: a put
// (put.go), which carries the whole content; the commit of an upload
// relayed through a server, held here (heldUnchanged) or taken over
// (takeOver); and the commit of a direct upload (commitDirect). The two
// uploads' commits check the upload and claim its record, then publish it
// (publishUpload); every one of the three writes the meta and has the
// version it replaced purged in one place, commit.

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

func (s *Server) uploadCommit(c *call) (any, error) {
	r, err := decodeCall[subjects.UploadCommitRequest](c)
	if err != nil {
		return nil, err
	}
	u, rec, ok := s.heldUnchanged(c, r.Upload)
	if !ok {
		cur, rev, err := s.loadUpload(c, r.Upload)
		if err != nil {
			return nil, err
		}
		if cur.Direct {
			return s.commitDirect(c, r, cur, rev)
		}
		u, rec, err = s.takeOver(c, r.Upload)
		if err != nil {
			return nil, err
		}
		if rec.Committed != nil {
			return *rec.Committed, nil
		}
	}
	defer s.holders.drop(rec.ID)
	// The writer is idle: a client commits only after every chunk's ack.
	u.stop()
	digest := digestOf(u.hash)
	switch {
	case rec.Bytes != r.Size:
		s.abortUpload(c.ctx, rec.ID)
		return nil, subjects.Errorf(subjects.CodeIntegrity, "upload of %q: server stored %d bytes, client sent %d; nothing was stored", rec.Name, rec.Bytes, r.Size)
	case rec.Size >= 0 && rec.Size != r.Size:
		s.abortUpload(c.ctx, rec.ID)
		return nil, subjects.Errorf(subjects.CodeIntegrity, "upload of %q: announced %d bytes, got %d; nothing was stored", rec.Name, rec.Size, r.Size)
	case digest != r.Digest:
		s.abortUpload(c.ctx, rec.ID)
		return nil, subjects.Errorf(subjects.CodeIntegrity, "upload of %q: digest mismatch (server %s, client %s); nothing was stored", rec.Name, digest, r.Digest)
	}
	return s.publishUpload(c, rec, u.rev, digest)
}

// heldUnchanged lets go of an upload this server holds for the caller and
// returns it when nobody has written its record since this holder did: its
// state in memory is then exactly what storage holds, and a commit needs
// neither the roll-forward over the chunks stored since the last checkpoint
// (read back through the stream) nor the claim of takeOver. A record
// written since means another server took the upload over.
func (s *Server) heldUnchanged(c *call, id string) (*upload, uploadRecord, bool) {
	u := s.holders.get(id)
	if u == nil || (u.rec.Owner != c.user && !c.admin) {
		return nil, uploadRecord{}, false
	}
	s.holders.dropIfHeld(u) // its writer stopped, u.rec and u.hash are ours to read
	if len(u.inflight) > 0 {
		return nil, uploadRecord{}, false // stores may still land: fence and walk
	}
	e, err := s.store.KVGet(c.ctx, s.uploads, id)
	if err != nil || e.Revision() != u.rev {
		return nil, uploadRecord{}, false
	}
	return u, u.rec, true
}

// publishUpload makes the upload rec, whose chunks are stored and checked,
// visible under its name with the given digest, and marks the record
// committed. rev is the revision of the record this commit claimed (its
// holder's last checkpoint, a takeover's or a direct commit's claim).
//
// Two copies of one commit may run at once: a client that got no answer in
// time asks again, on either server. The meta is written once at most, and
// never after the client acted on an answer (deleted the file, put another
// in its place). A copy writes only while its claim is the record's latest
// and the name is unchanged since it looked (the meta's compare-and-set);
// a name that holds or held this upload's version was published already;
// and a copy answers success only once its own claim marked the record
// committed, so that no other copy can hold a claim by then.
func (s *Server) publishUpload(c *call, rec uploadRecord, rev uint64, digest string) (subjects.FileInfo, error) {
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{
			Name:     rec.Name,
			Metadata: map[string]string{subjects.MetaOwner: rec.Owner},
			Opts:     &jetstream.ObjectMetaOptions{ChunkSize: subjects.ChunkSize},
		},
		Bucket:  s.cfg.Bucket,
		NUID:    rec.ID,
		Size:    uint64(rec.Bytes),
		ModTime: time.Now().UTC(),
		Chunks:  rec.Chunks,
		Digest:  digest,
	}
	for attempt := 0; ; attempt++ {
		replaced, err := s.getObject(c.ctx, rec.Name)
		if err != nil {
			return subjects.FileInfo{}, err
		}
		if replaced.seq != 0 && replaced.info.NUID == rec.ID {
			// Published by another copy of this commit, and deleted or
			// renamed since when its meta is a tombstone.
			fi := fileInfo(info)
			if replaced.live() {
				fi = fileInfo(replaced.info)
			}
			return s.markCommitted(c, rec, rev, fi)
		}
		// Checked after the name was read: a claim taken from here on
		// comes with a meta write that fails this one's compare-and-set.
		if fi, done, err := s.stillHolds(c, rec.ID, rev); done || err != nil {
			return fi, err
		}
		if err := s.mayReplace(c, rec, replaced); err != nil {
			s.abortUpload(c.ctx, rec.ID)
			return subjects.FileInfo{}, err
		}
		fi, _, err := s.commit(c, info, replaced, byClaim)
		if err == errConflict && attempt < 3 {
			continue
		}
		if err != nil {
			return subjects.FileInfo{}, err
		}
		return s.markCommitted(c, rec, rev, fi)
	}
}

// stillHolds checks that upload id's record is still at rev, the revision
// this commit claimed. Moved on, the commit is done: with the outcome
// another copy of it recorded, or busy while that copy runs.
func (s *Server) stillHolds(c *call, id string, rev uint64) (fi subjects.FileInfo, done bool, err error) {
	cur, curRev, err := s.loadUpload(c, id)
	switch {
	case err != nil:
		return fi, true, err
	case curRev == rev:
		return fi, false, nil
	case cur.Committed != nil:
		return *cur.Committed, true, nil
	}
	return fi, true, errTakeoverRace(id)
}

// markCommitted records fi, the published version, as the outcome of the
// commit whose claim is at rev.
func (s *Server) markCommitted(c *call, rec uploadRecord, rev uint64, fi subjects.FileInfo) (subjects.FileInfo, error) {
	rec.Committed, rec.Updated = &fi, time.Now().UTC()
	b, _ := json.Marshal(rec)
	if _, err := s.store.KVUpdate(c.ctx, s.uploads, rec.ID, b, rev); err != nil {
		return s.claimLost(c, rec.ID, "mark upload committed", err)
	}
	return fi, nil
}

// claimLost answers a commit whose write to upload id's record (its claim,
// or the mark of its outcome) failed with err: the outcome another copy of
// the commit recorded, or err while storage is unavailable, or busy while
// another copy holds the claim. The client must not act on this copy's
// success while the other may still write.
func (s *Server) claimLost(c *call, id, what string, err error) (subjects.FileInfo, error) {
	if cur, _, lerr := s.loadUpload(c, id); lerr == nil && cur.Committed != nil {
		return *cur.Committed, nil
	}
	if store.Unavailable(err) {
		return subjects.FileInfo{}, wrapStorage(what, err)
	}
	return subjects.FileInfo{}, errTakeoverRace(id)
}

// mayReplace checks that the version rec describes may take its name from
// cur, the version the name holds now: the access rule lets the user
// write there, the name is free or rec overwrites, the user may change
// cur, and the limits admit it.
func (s *Server) mayReplace(c *call, rec uploadRecord, cur object) error {
	if err := s.needAccess(c, rec.Name, mayWrite, "write"); err != nil {
		return err // asked again: the rule may have changed since the upload opened
	}
	if cur.live() && !rec.Overwrite {
		return subjects.Errorf(subjects.CodeConflict, "%q exists already", rec.Name)
	}
	if err := s.mayReplaceName(c, rec.Name, cur); err != nil {
		return err
	}
	return s.admitCommit(c.ctx, rec, cur)
}

// metaWrite is how commit writes a meta message, which makes a second
// write of the same commit harmless.
type metaWrite int

const (
	// byRequest writes under the request's ID as JetStream message ID
	// (requestMeta): a copy of the request, run later or on another
	// server, finds the write done and writes nothing; a run past its
	// deadline writes nothing. A put's.
	byRequest metaWrite = iota
	// byClaim writes under an ID derived from the write (putMeta): the
	// copies of an upload's commit are kept apart by their claims on the
	// upload's record (publishUpload).
	byClaim
)

// commit makes info, a version whose content is stored and checked, the
// file of its name in place of cur, the version the name held when the
// caller looked: it writes info's meta message provided the name's meta is
// still at cur.seq (errConflict when it has moved), then has cur's
// version purged once no name points at it. done says that an earlier run
// of the request wrote the meta (byRequest only) and this one wrote
// nothing. The file's info is returned as stored (modTime).
func (s *Server) commit(c *call, info jetstream.ObjectInfo, cur object, how metaWrite) (fi subjects.FileInfo, done bool, err error) {
	var seq uint64
	if how == byRequest {
		seq, done, err = s.requestMeta(c, info, cur.seq, "")
	} else {
		seq, err = s.putMeta(c.ctx, info, cur.seq)
	}
	if err != nil || done {
		return subjects.FileInfo{}, done, err
	}
	// The version replaced, if another: its chunks are purged once the
	// files index, as of the meta just written, shows no name on it.
	if cur.live() && cur.info.NUID != info.NUID {
		s.purgeLater(cur.info.NUID, seq)
	}
	fi = fileInfo(info)
	s.log.Info("file stored", "name", fi.Name, "size", fi.Size, "owner", fi.Owner, "by", c.user)
	return fi, false, nil
}

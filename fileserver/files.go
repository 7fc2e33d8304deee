package fileserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// ftfs writes the object store's layout directly, so that an upload can be
// continued by any instance and a file only becomes visible when its meta
// message is stored.
func (s *Server) metaSubject(name string) string { return subjects.ObjectMeta(s.cfg.Bucket, name) }

func (s *Server) chunkSubject(nuid string) string { return subjects.ObjectChunks(s.cfg.Bucket, nuid) }

func (s *Server) fenceSubject(id string, i int) string {
	return subjects.UploadFence(s.cfg.Bucket, id, i)
}

// object is a file's current meta message and its stream sequence, which a
// writer names in Nats-Expected-Last-Subject-Sequence so that two concurrent
// changes of one name cannot both succeed.
type object struct {
	info jetstream.ObjectInfo
	seq  uint64 // 0: the name was never written
}

func (o object) live() bool { return o.seq != 0 && !o.info.Deleted }

func (o object) owner() string { return o.info.Metadata[subjects.MetaOwner] }

// getObject reads the meta message of name; a missing name is a zero object.
func (s *Server) getObject(ctx context.Context, name string) (object, error) {
	m, err := s.leaderGet(ctx, store.MsgRequest{LastFor: s.metaSubject(name)})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return object{}, nil
	}
	if err != nil {
		return object{}, wrapStorage("read file info", err)
	}
	var o object
	if err := json.Unmarshal(m.Data, &o.info); err != nil {
		return object{}, fmt.Errorf("file %q: corrupt meta message: %w", name, err)
	}
	o.info.ModTime = modTime(o.info, m.Time)
	o.seq = m.Sequence
	return o, nil
}

// lookupObject is name's meta as the files index holds it, without a
// storage call, or when fresh as storage holds it (getObject). A small
// put or a delete decides on the index first and reads storage only when
// it must: the index lags storage by a moment, but a write made on what it
// says names the sequence it saw, and fails (errConflict) rather than
// overwrite a change the index has not seen yet; a refusal made on it
// (no such file, it exists, not yours) is confirmed on storage.
func (s *Server) lookupObject(ctx context.Context, name string, fresh bool) (object, error) {
	if !fresh {
		return s.usage.indexedObject(s.cfg.Bucket, name), nil
	}
	return s.getObject(ctx, name)
}

// liveObject is getObject for a name that must exist.
func (s *Server) liveObject(ctx context.Context, name string) (object, error) {
	if err := subjects.ValidName(name); err != nil {
		return object{}, err
	}
	o, err := s.getObject(ctx, name)
	if err != nil {
		return o, err
	}
	if !o.live() {
		return o, subjects.Errorf(subjects.CodeNotFound, "no file %q", name)
	}
	return o, nil
}

// putMeta stores info as the meta message of its name, provided the name's
// meta is still at expectSeq. It returns errConflict when it has moved.
func (s *Server) putMeta(ctx context.Context, info jetstream.ObjectInfo, expectSeq uint64) (uint64, error) {
	seq, _, err := s.writeMeta(ctx, info, expectSeq, "")
	return seq, err
}

// writeMeta stores info's meta message under message ID msgID, or one
// derived from the write when msgID is "". The write is sent again when its
// acknowledgement is lost (a leader dying with it); the message ID makes
// JetStream answer a second copy with the first one's sequence (duplicate)
// instead of storing, or refusing, it.
func (s *Server) writeMeta(ctx context.Context, info jetstream.ObjectInfo, expectSeq uint64, msgID string) (seq uint64, duplicate bool, err error) {
	data, err := json.Marshal(info)
	if err != nil {
		return 0, false, err
	}
	m := nats.NewMsg(s.metaSubject(info.Name))
	if msgID == "" {
		sum := sha256.Sum256(append([]byte(m.Subject+"\x00"+strconv.FormatUint(expectSeq, 10)+"\x00"), data...))
		msgID = hex.EncodeToString(sum[:16])
	}
	m.Data = data
	ack, err := s.store.Publish(ctx, m, store.Expect{LastSeq: expectSeq, MsgID: msgID, Rollup: true})
	if store.WrongLastSequence(err) {
		return 0, false, errConflict
	}
	if err != nil {
		return 0, false, wrapStorage("write file info", err)
	}
	s.changeWritten(ack.Sequence, expectSeq, data)
	return ack.Sequence, ack.Duplicate, nil
}

var errConflict = subjects.Errorf(subjects.CodeConflict, "the file changed meanwhile; try again")

// modTime is when a file was last changed: the time its server wrote into
// its meta, or for a meta written by another tool (nats.go's object store
// stores none), the time JetStream stored the message. The server's own
// time lets it answer a put with the file's time without reading the meta
// back; the two differ by the write's round trip.
func modTime(info jetstream.ObjectInfo, stored time.Time) time.Time {
	if info.ModTime.IsZero() {
		return stored
	}
	return info.ModTime
}

func fileInfo(info jetstream.ObjectInfo) subjects.FileInfo {
	return subjects.FileInfo{
		Name:     info.Name,
		Size:     int64(info.Size),
		Modified: info.ModTime,
		Owner:    info.Metadata[subjects.MetaOwner],
		Digest:   info.Digest,
		Version:  info.NUID,
		Chunks:   info.Chunks,
	}
}

// allObjects lists every live object, sorted by name.
func (s *Server) allObjects(ctx context.Context) ([]jetstream.ObjectInfo, error) {
	var out []jetstream.ObjectInfo
	var err error
	if s.store.ObjectStreamCachedInfo().Config.Replicas > 1 {
		out, err = s.allObjectsFromLeader(ctx)
	} else {
		out, err = s.allObjectsFromConsumer(ctx)
	}
	if err != nil {
		return nil, wrapStorage("list files", err)
	}
	slices.SortFunc(out, func(a, b jetstream.ObjectInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// allObjectsFromConsumer reads the metas with an ordered consumer: fast,
// and consistent on a single replica.
func (s *Server) allObjectsFromConsumer(ctx context.Context) ([]jetstream.ObjectInfo, error) {
	list, err := s.store.ListObjects(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]jetstream.ObjectInfo, 0, len(list))
	for _, o := range list {
		if !o.Deleted {
			out = append(out, *o)
		}
	}
	return out, nil
}

// allObjectsFromLeader lists through the stream leader. On replicated
// streams an ordered consumer may sit on a follower that has not applied
// the latest writes, and a listing must show every acknowledged change: so
// the leader names the meta subjects and each is read through it.
func (s *Server) allObjectsFromLeader(ctx context.Context) ([]jetstream.ObjectInfo, error) {
	metas, err := s.readMetas(ctx)
	if err != nil {
		return nil, err
	}
	var out []jetstream.ObjectInfo
	for _, m := range metas {
		if !m.info.Deleted {
			m.info.ModTime = modTime(m.info, m.time)
			out = append(out, m.info)
		}
	}
	return out, nil
}

func (s *Server) list(c *call) (any, error) {
	r, err := decodeCall[subjects.ListRequest](c)
	if err != nil {
		return nil, err
	}
	v, err := s.accessOf(c)
	if err != nil {
		return nil, err
	}
	visible := v.visible()
	err = s.syncCatalog(c.ctx)
	if err == nil {
		if reply, ok := s.usage.loadedListing(r, visible); ok {
			return reply, nil
		}
		err = errIndexBehind
	}
	if !errors.Is(err, errIndexBehind) {
		return nil, wrapStorage("list files", err)
	}
	s.log.Debug("files index behind storage; listing the bucket")
	all, err := s.allObjects(c.ctx)
	if err != nil {
		return nil, err
	}
	files := make([]subjects.FileInfo, len(all))
	for i, o := range all {
		files[i] = fileInfo(o)
	}
	return pageVisible(r, files, visible), nil
}

// pageLimit is how many files the page r asks for may hold.
func pageLimit(r subjects.ListRequest) int {
	if r.Limit <= 0 || r.Limit > subjects.MaxListPage {
		return subjects.MaxListPage
	}
	return r.Limit
}

// page cuts the page r asks for out of every file, sorted by name.
func page(r subjects.ListRequest, all []subjects.FileInfo) subjects.ListReply {
	return pageVisible(r, all, nil)
}

// pageVisible is page of the files visible accepts (every file when nil),
// cut after the filter as listVisible does.
func pageVisible(r subjects.ListRequest, all []subjects.FileInfo, visible func(string) bool) subjects.ListReply {
	r.Limit = pageLimit(r)
	reply := subjects.ListReply{Files: []subjects.FileInfo{}}
	for _, f := range all {
		if !strings.HasPrefix(f.Name, r.Prefix) || (r.After != "" && f.Name <= r.After) {
			continue
		}
		if visible != nil && !visible(f.Name) {
			continue
		}
		if len(reply.Files) == r.Limit {
			reply.More = true
			break
		}
		reply.Files = append(reply.Files, f)
	}
	return reply
}

func (s *Server) stat(c *call) (any, error) {
	o, err := s.namedObject(c, mayRead|mayListName, "see")
	if err != nil {
		return nil, err
	}
	return fileInfo(o.info), nil
}

// namedObject reads the live file a NameRequest names, provided the
// caller has one of anyOf on it (asked first: a refusal does not tell
// whether the file exists).
func (s *Server) namedObject(c *call, anyOf rights, doing string) (object, error) {
	r, err := decodeCall[subjects.NameRequest](c)
	if err != nil {
		return object{}, err
	}
	if err := subjects.ValidName(r.Name); err != nil {
		return object{}, err
	}
	if err := s.needAccess(c, r.Name, anyOf, doing); err != nil {
		return object{}, err
	}
	return s.liveObject(c.ctx, r.Name)
}

func (s *Server) delete(c *call) (any, error) {
	r, err := decodeCall[subjects.NameRequest](c)
	if err != nil {
		return nil, err
	}
	if err := subjects.ValidName(r.Name); err != nil {
		return nil, err
	}
	if err := s.needAccess(c, r.Name, mayDelete|mayWrite, "delete"); err != nil {
		return nil, err
	}
	for attempt, fresh := 0, false; ; fresh = true {
		o, err := s.lookupObject(c.ctx, r.Name, fresh)
		if err != nil {
			return nil, err
		}
		if !o.live() {
			switch {
			case !fresh:
				continue // the index may lag: look in storage
			case doneBy(c, o):
				return nil, nil // this request deleted it already
			}
			return nil, subjects.Errorf(subjects.CodeNotFound, "no file %q", r.Name)
		}
		if err := s.mayRemove(c, o); err != nil {
			if !fresh {
				continue
			}
			return nil, err
		}
		tomb := stamped(c, o.info)
		tomb.Deleted, tomb.Size, tomb.Chunks, tomb.Digest = true, 0, 0, ""
		tomb.ModTime = time.Now().UTC()
		seq, done, err := s.requestMeta(c, tomb, o.seq, "")
		if err == errConflict && attempt < 3 {
			attempt++
			continue
		}
		if err != nil {
			return nil, err
		}
		s.purgeLater(o.info.NUID, seq) // only if no name points at it
		if !done {
			s.audit("file deleted", "name", r.Name, "by", c.user)
		}
		return nil, nil
	}
}

// rename points the new name at the same content, then removes the old
// name. Content is not copied.
func (s *Server) rename(c *call) (any, error) {
	r, err := decodeCall[subjects.RenameRequest](c)
	if err != nil {
		return nil, err
	}
	for _, n := range []string{r.From, r.To} {
		if err := subjects.ValidName(n); err != nil {
			return nil, err
		}
	}
	if r.From == r.To {
		return nil, subjects.Errorf(subjects.CodeInvalid, "%q and its new name are the same", r.From)
	}
	// A rename is a delete of the old name and a put of the new one.
	if err := s.needAccess(c, r.From, mayDelete|mayWrite, "rename"); err != nil {
		return nil, err
	}
	if err := s.needAccess(c, r.To, mayWrite, "write"); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		from, err := s.getObject(c.ctx, r.From)
		if err != nil {
			return nil, err
		}
		if !from.live() {
			// A retry of a rename that got through: the new name carries
			// this request's mark.
			if to, err := s.getObject(c.ctx, r.To); err == nil && to.live() && doneBy(c, to) {
				return fileInfo(to.info), nil
			}
			return nil, subjects.Errorf(subjects.CodeNotFound, "no file %q", r.From)
		}
		if err := s.mayRemove(c, from); err != nil {
			return nil, err
		}
		to, err := s.getObject(c.ctx, r.To)
		if err != nil {
			return nil, err
		}
		// An earlier attempt of this request may have stored the new name
		// and not removed the old one.
		halfDone := to.live() && doneBy(c, to) && to.info.NUID == from.info.NUID
		if to.live() && !halfDone && !r.Overwrite {
			return nil, subjects.Errorf(subjects.CodeConflict, "%q exists already", r.To)
		}
		if err := s.mayReplaceName(c, r.To, to); err != nil {
			return nil, err
		}
		moved := stamped(c, from.info)
		moved.Name = r.To
		tomb := stamped(c, from.info)
		markRename(&moved, &tomb, r.From, r.To)
		moved.ModTime = from.info.ModTime // the content's, as mv keeps it
		if _, _, err = s.requestMeta(c, moved, to.seq, ".to"); err == errConflict && attempt < 3 {
			continue
		} else if err != nil {
			return nil, err
		}
		tomb.Deleted, tomb.Size, tomb.Chunks, tomb.Digest = true, 0, 0, ""
		tombSeq, _, err := s.requestMeta(c, tomb, from.seq, ".from")
		if err != nil {
			// The new name is in place; the old one still shows the same
			// content. Report it: the user can remove the old name.
			return nil, fmt.Errorf("rename %q: new name stored, old name not removed: %w", r.From, err)
		}
		if to.live() && to.info.NUID != from.info.NUID {
			s.purgeLater(to.info.NUID, tombSeq)
		}
		s.audit("file renamed", "from", r.From, "to", r.To, "by", c.user)
		o, err := s.getObject(c.ctx, r.To)
		if err != nil {
			return nil, err
		}
		return fileInfo(o.info), nil
	}
}

package fileserver

// Uploads. A client opens an upload on any instance and streams chunks to
// the instance holding it, whose writer stores them into the object store
// with several in flight, behind the upload's fences, and repairs the
// order when a store fails (writer.go). Every few chunks the holder writes
// a checkpoint (chunk count, size, last stream sequence and the SHA-256
// state) to the uploads bucket with a compare-and-set on its revision. When
// the holder dies the client asks any instance to resume: that instance
// moves the fences on (the old holder can store nothing more), reads the
// checkpoint, walks the chunks stored since, takes the record over
// (compare-and-set again) and tells the client where to go on. Nothing is
// visible until commit writes the object's meta message; abandoned uploads
// are purged by the janitor.

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

const (
	// checkpointChunks and checkpointEvery bound how much a resuming
	// instance must re-read to rebuild the digest state.
	checkpointChunks = 16
	checkpointEvery  = 2 * time.Second
	// committedKeep is how long a committed upload's record stays, so that
	// a client retrying its commit gets the same answer.
	committedKeep = 10 * time.Minute
)

// uploadRecord is an upload as stored in the uploads bucket, keyed by its ID
// (which is also the NUID of the object it will become).
type uploadRecord struct {
	ID        string             `json:"id"`
	Name      string             `json:"name"`
	Owner     string             `json:"owner"`
	Size      int64              `json:"size"` // announced; -1 unknown
	Overwrite bool               `json:"overwrite"`
	Instance  string             `json:"instance"` // holder
	Created   time.Time          `json:"created"`
	Updated   time.Time          `json:"updated"`
	Chunks    uint32             `json:"chunks"`
	Bytes     int64              `json:"bytes"`
	LastSeq   uint64             `json:"last_seq"`
	Hash      []byte             `json:"hash,omitempty"` // sha256 state after Chunks
	Committed *subjects.FileInfo `json:"committed,omitempty"`
	// Via is the identity whose connection opened the upload when it is
	// not the owner's: the share link gateway, uploading for the sharer.
	// Its upload connection's inbox is below Via's.
	Via string `json:"via,omitempty"`
	// Direct: the client publishes the chunks itself (direct.go), over a
	// connection authorized by the secret whose SHA-256 is TokenHash.
	Direct    bool   `json:"direct,omitempty"`
	TokenHash string `json:"token_hash,omitempty"`
}

// upload is an upload this instance holds.
type upload struct {
	s            *Server
	rec          uploadRecord
	rev          uint64    // revision of the record this holder last wrote
	hash         hash.Hash // digest state after rec.Chunks
	fences       []uint64  // where this holder set each fence subject (writer.go)
	mark         string    // this holder's mark on its fence moves
	inflight     []*storing
	failingSince time.Time     // first of the failed stores since the last one stored
	backoff      time.Duration // before the next repair
	queue        chan chunkMsg
	ctx          context.Context
	cancel       context.CancelFunc
	done         chan struct{}
	pending      int // chunks stored since the last checkpoint
	saved        time.Time
}

type chunkMsg struct {
	index uint32
	data  []byte
	reply micro.Request
}

func (u *upload) stop() {
	u.cancel()
	<-u.done
}

func (s *Server) uploadState(rec uploadRecord) subjects.UploadState {
	return subjects.UploadState{
		Upload:    rec.ID,
		Instance:  s.instance,
		NextChunk: rec.Chunks,
		Offset:    rec.Bytes,
		ChunkSize: subjects.ChunkSize,
		Window:    subjects.UploadWindow,
	}
}

func (s *Server) uploadOpen(c *call) (any, error) {
	r, err := decodeCall[subjects.UploadOpenRequest](c)
	if err != nil {
		return nil, err
	}
	if err := subjects.ValidName(r.Name); err != nil {
		return nil, err
	}
	if r.Size < -1 {
		return nil, subjects.Errorf(subjects.CodeInvalid, "size %d is negative", r.Size)
	}
	if err := s.checkFileSize(r.Name, r.Size); err != nil {
		return nil, err
	}
	// Fail fast; commit checks again against the file and the access
	// rule as they are then.
	if err := s.needAccess(c, r.Name, mayWrite, "write"); err != nil {
		return nil, err
	}
	cur, err := s.getObject(c.ctx, r.Name)
	if err != nil {
		return nil, err
	}
	if cur.live() && !r.Overwrite {
		return nil, subjects.Errorf(subjects.CodeConflict, "%q exists already", r.Name)
	}
	if err := s.mayReplaceName(c, r.Name, cur); err != nil {
		return nil, err
	}
	if r.Direct && r.Size < 0 {
		// Its size bounds what its connection may store.
		return nil, subjects.Errorf(subjects.CodeInvalid, "a direct upload needs its size; upload a stream of unknown size through a server")
	}
	if err := s.admitUpload(c.ctx, c.user, r.Size, ownSize(cur, c.user)); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	rec := uploadRecord{
		ID: nuid.Next(), Name: r.Name, Owner: c.user, Size: r.Size, Overwrite: r.Overwrite,
		Instance: s.instance, Created: now, Updated: now, Hash: hashState(sha256.New()),
	}
	if via := subjects.UserOf(c.req.Subject()); via != c.user {
		rec.Via = via
	}
	var secret string
	if r.Direct {
		secret = newSecret()
		rec.Direct, rec.TokenHash = true, sessionKey(secret)
	}
	b, _ := json.Marshal(rec)
	rev, err := s.store.KVCreate(c.ctx, s.uploads, rec.ID, b)
	if err != nil {
		return nil, wrapStorage("record upload", err)
	}
	if rec.Direct {
		s.log.Debug("direct upload opened", "upload", rec.ID, "name", rec.Name, "user", c.user)
		return s.directState(rec, make([]uint64, fenceCount), secret), nil
	}
	s.hold(rec, rev, sha256.New(), make([]uint64, fenceCount), holderMark(s))
	s.log.Debug("upload opened", "upload", rec.ID, "name", rec.Name, "user", c.user)
	return s.uploadState(rec), nil
}

// holderMark is a new mark for a holder's fence moves.
func holderMark(s *Server) string { return s.instance + "." + nuid.Next() }

// chunk takes one chunk message. It runs on the endpoint's single dispatch
// goroutine, which keeps the chunks of an upload in their order; the
// upload's writer does the storing.
func (s *Server) chunk(req micro.Request) {
	id := req.Headers().Get(subjects.HeaderUpload)
	idx, err := strconv.ParseUint(req.Headers().Get(subjects.HeaderChunk), 10, 32)
	if id == "" || err != nil {
		s.reply(req, nil, subjects.Errorf(subjects.CodeInvalid, "chunk without valid %s and %s headers", subjects.HeaderUpload, subjects.HeaderChunk))
		return
	}
	if len(req.Data()) > subjects.ChunkSize {
		s.reply(req, nil, subjects.Errorf(subjects.CodeTooLarge, "chunk of %d bytes; the limit is %d", len(req.Data()), subjects.ChunkSize))
		return
	}
	u := s.holders.get(id)
	if u == nil {
		s.reply(req, nil, subjects.Errorf(subjects.CodeNotFound, "upload %s is not held by this server: resume it", id))
		return
	}
	if !ownInbox(req, u.rec.Owner) {
		s.log.Warn("chunk refused: reply subject outside the owner's inbox", "upload", id)
		return
	}
	s.countReceived("upload", int64(len(req.Data())))
	select {
	case u.queue <- chunkMsg{index: uint32(idx), data: req.Data(), reply: req}:
	default:
		s.reply(req, nil, subjects.Errorf(subjects.CodeBusy, "more than %d chunks in flight for upload %s", subjects.UploadWindow, id))
	}
}

// A chunk's store is waited for chunkAttempt before the writer repairs, and
// repaired for chunkRetryFor in all. A publish that reached a stream leader
// as it died is never answered: a short wait repairs soon after the
// election (4 to 9 s) has found a new one.
const (
	chunkAttempt  = 2 * time.Second
	chunkRetryFor = 30 * time.Second
)

func isTooManyRequests(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 429
}

// checkpoint saves the holder's progress, failing if another instance has
// written the record since (it took the upload over).
func (u *upload) checkpoint() error {
	u.rec.Hash = hashState(u.hash)
	u.rec.Updated = time.Now().UTC()
	u.rec.Instance = u.s.instance
	b, _ := json.Marshal(u.rec)
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	rev, err := u.s.store.KVUpdate(ctx, u.s.uploads, u.rec.ID, b, u.rev)
	if err != nil {
		return err
	}
	u.rev, u.pending, u.saved = rev, 0, time.Now()
	return nil
}

func hashState(h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic(err) // crypto/sha256 always marshals
	}
	return b
}

func digestOf(h hash.Hash) string {
	return subjects.Digest(h.Sum(nil))
}

// loadUpload reads an upload record the caller may act on.
func (s *Server) loadUpload(c *call, id string) (uploadRecord, uint64, error) {
	if id == "" {
		return uploadRecord{}, 0, subjects.Errorf(subjects.CodeInvalid, "no upload id")
	}
	rec, rev, err := s.readUpload(c.ctx, id)
	if err != nil {
		return rec, 0, err
	}
	if rec.Owner != c.user && !c.admin {
		return rec, 0, subjects.Errorf(subjects.CodeForbidden, "upload %s belongs to another user", id)
	}
	return rec, rev, nil
}

// readUpload reads upload id's record and its revision, whoever asks:
// CodeNotFound when there is none.
func (s *Server) readUpload(ctx context.Context, id string) (uploadRecord, uint64, error) {
	var rec uploadRecord
	e, err := s.store.KVGet(ctx, s.uploads, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return rec, 0, subjects.Errorf(subjects.CodeNotFound, "no upload %s (finished, aborted or expired)", id)
	}
	if err != nil {
		return rec, 0, wrapStorage("read upload", err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, 0, fmt.Errorf("upload %s: corrupt record: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// takeOver makes this instance the holder of an upload, whoever held it:
// it stops a local writer, moves the upload's fences on (the holder before
// can store nothing more), rolls the record's checkpoint forward over the
// chunks stored after it (walk), and claims the record.
func (s *Server) takeOver(c *call, id string) (*upload, uploadRecord, error) {
	// Whether the caller may act on it, first: a request refused (another
	// user's, an unknown upload) must not stop the writer of someone's
	// upload in flight.
	if rec, _, err := s.loadUpload(c, id); err != nil {
		return nil, rec, err
	}
	s.holders.drop(id) // a local writer must not race the roll-forward
	s.dropElsewhere(c.ctx, id)
	for attempt := 0; ; attempt++ {
		rec, rev, err := s.loadUpload(c, id)
		if err != nil || rec.Committed != nil {
			return nil, rec, err
		}
		h := sha256.New()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(rec.Hash); err != nil {
			return nil, rec, fmt.Errorf("upload %s: bad digest state: %w", id, err)
		}
		fences, mark := make([]uint64, fenceCount), holderMark(s)
		if err := s.fence(c.ctx, id, fences, true, mark); err != nil {
			if errors.Is(err, errDeposed) && attempt < 3 {
				continue // another server is taking it over too
			}
			if errors.Is(err, errDeposed) {
				return nil, rec, errTakeoverRace(id)
			}
			return nil, rec, wrapStorage("fence upload", err)
		}
		if err := s.walk(c.ctx, &rec, h); err != nil {
			return nil, rec, err
		}
		rec.Hash = hashState(h)
		rec.Instance = s.instance
		rec.Updated = time.Now().UTC()
		b, _ := json.Marshal(rec)
		newRev, err := s.store.KVUpdate(c.ctx, s.uploads, id, b, rev)
		if err != nil && attempt < 3 && !store.Unavailable(err) {
			continue // someone checkpointed meanwhile: roll forward again
		}
		if err != nil && !store.Unavailable(err) {
			return nil, rec, errTakeoverRace(id)
		}
		if err != nil {
			return nil, rec, wrapStorage("claim upload", err)
		}
		if rec.Direct {
			// Its client stores the chunks, behind the fences just moved.
			return &upload{s: s, rec: rec, rev: newRev, hash: h, fences: fences, mark: mark}, rec, nil
		}
		return s.hold(rec, newRev, h, fences, mark), rec, nil
	}
}

// errTakeoverRace answers a takeover that kept losing to another one (a
// client that sent its resume again to the other server, the holder
// repairing): busy, so that the client asks again, and one of them wins.
func errTakeoverRace(id string) error {
	return subjects.Errorf(subjects.CodeBusy, "upload %s is being taken over by another request; try again", id)
}

func (s *Server) uploadResume(c *call) (any, error) {
	r, err := decodeCall[subjects.UploadRequest](c)
	if err != nil {
		return nil, err
	}
	u, rec, err := s.takeOver(c, r.Upload)
	if err != nil {
		return nil, err
	}
	if rec.Committed != nil {
		// Nobody holds it: a state would send chunks where none is taken.
		return nil, subjects.Errorf(subjects.CodeConflict, "upload %s is committed already", rec.ID)
	}
	s.log.Info("upload resumed", "upload", rec.ID, "name", rec.Name, "from_chunk", rec.Chunks, "offset", rec.Bytes, "direct", rec.Direct)
	if rec.Direct {
		return s.directState(rec, u.fences, ""), nil
	}
	return s.uploadState(rec), nil
}

func (s *Server) uploadAbort(c *call) (any, error) {
	r, err := decodeCall[subjects.UploadRequest](c)
	if err != nil {
		return nil, err
	}
	rec, _, err := s.loadUpload(c, r.Upload)
	if subjects.CodeOf(err) == subjects.CodeNotFound {
		return nil, nil // already gone: aborting is idempotent
	}
	if err != nil {
		return nil, err
	}
	if rec.Committed != nil {
		return nil, subjects.Errorf(subjects.CodeConflict, "upload %s is committed already", rec.ID)
	}
	s.holders.drop(rec.ID)
	s.dropElsewhere(c.ctx, rec.ID) // or its holder acknowledges chunks of a purged upload
	s.abortUpload(c.ctx, rec.ID)
	return nil, nil
}

// abortUpload forgets an upload and purges its chunks. A direct upload's
// connections are cut first (endUpload) and its record goes before its
// chunks, so that no reconnect is authorized meanwhile; the chunks are
// purged again a moment later, for any that were on their way while the
// brokers cut. A purge that fails leaves chunks nothing points at, which
// the storage sweep finds.
func (s *Server) abortUpload(ctx context.Context, id string) {
	s.holders.drop(id)
	s.endUpload(id)
	if err := s.store.KVPurgeOnce(ctx, s.uploads, id); err != nil {
		s.log.Warn("forget aborted upload", "upload", id, "err", err)
	}
	s.purgeChunks(ctx, id)
	s.goBounded(func() {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(time.Second):
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		defer cancel()
		s.purgeChunks(ctx, id)
	})
}

// purgeChunks purges the chunk subject of an upload that was not committed.
func (s *Server) purgeChunks(ctx context.Context, id string) {
	if err := s.store.PurgeSubject(ctx, s.chunkSubject(id)); err != nil {
		s.log.Warn("purge aborted upload", "upload", id, "err", err)
	}
}

// endUpload tells the brokers that upload id has ended (committed, aborted
// or dropped): they cut its direct connections at once.
func (s *Server) endUpload(id string) {
	if err := s.front.Publish(subjects.UploadEnded, []byte(id)); err != nil {
		s.log.Warn("tell the brokers an upload ended", "upload", id, "err", err)
	}
}

// dropOverrun drops a direct upload whose connection a broker cut for
// publishing more than its size allows (subjects.UploadOverrun).
func (s *Server) dropOverrun(id string) {
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	defer cancel()
	rec, _, err := s.readUpload(ctx, id)
	if err != nil {
		// Gone: aborted or dropped (and purged then; the storage sweep
		// takes what came after), or committed long ago and forgotten,
		// whose chunks are a file's. Purging here could take a file.
		if subjects.CodeOf(err) != subjects.CodeNotFound {
			s.log.Warn("upload overrun: read upload", "upload", id, "err", err)
		}
		return
	}
	if !rec.Direct || rec.Committed != nil {
		return
	}
	s.log.Warn("direct upload dropped: its connection published more than its size", "upload", id, "name", rec.Name, "user", rec.Owner, "size", rec.Size)
	s.abortUpload(ctx, id)
}

// janitor purges abandoned uploads and forgets committed ones, on every
// instance; compare-and-set deletes make the instances agree.
func (s *Server) janitor() {
	s.every(s.janitorEvery(), func() {
		if !s.store.ReadOnly() {
			s.sweepUploads()
		}
	})
}

// janitorEvery is how often the janitor runs (and the sweep of expired
// sessions, expireSessions).
func (s *Server) janitorEvery() time.Duration { return min(30*time.Second, s.cfg.UploadIdle/2) }

// eachUpload calls f with every upload record.
func (s *Server) eachUpload(ctx context.Context, f func(rec uploadRecord, rev uint64)) {
	ids, err := s.store.KVKeys(ctx, s.uploads)
	if err != nil {
		return
	}
	for _, id := range ids {
		e, err := s.store.KVGetOnce(ctx, s.uploads, id)
		if err != nil {
			continue
		}
		var rec uploadRecord
		if json.Unmarshal(e.Value(), &rec) == nil {
			f(rec, e.Revision())
		}
	}
}

func (s *Server) sweepUploads() {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	s.eachUpload(ctx, func(rec uploadRecord, rev uint64) {
		id := rec.ID
		age := time.Since(rec.Updated)
		switch {
		case rec.Committed != nil && age > committedKeep:
			_ = s.store.KVDeleteAt(ctx, s.uploads, id, rev)
		case rec.Committed == nil && rec.Direct:
			if s.directAbandoned(ctx, rec, age) {
				s.dropAbandoned(ctx, rec, rev, age)
			}
		case rec.Committed == nil && age > s.cfg.UploadIdle:
			s.holders.drop(id)
			s.dropAbandoned(ctx, rec, rev, age)
		}
	})
}

// dropAbandoned forgets an abandoned upload, then purges its chunks. The
// record goes first: a commit still running somewhere then loses its claim
// (publishUpload) instead of publishing chunks being purged. A version
// published all the same (a commit that could not mark its record) keeps
// its chunks. A purge that fails leaves chunks nothing points at, which
// the storage sweep finds.
func (s *Server) dropAbandoned(ctx context.Context, rec uploadRecord, rev uint64, idle time.Duration) {
	if err := s.store.KVDeleteAt(ctx, s.uploads, rec.ID, rev); err != nil {
		return // written meanwhile: not abandoned after all
	}
	if rec.Direct {
		s.endUpload(rec.ID)
	}
	if err := s.syncCatalog(ctx); err != nil || s.usage.references(rec.ID) {
		return
	}
	if err := s.store.PurgeSubject(ctx, s.chunkSubject(rec.ID)); err != nil {
		s.log.Warn("purge abandoned upload", "upload", rec.ID, "err", err)
		return
	}
	s.log.Info("abandoned upload purged", "upload", rec.ID, "name", rec.Name, "idle", idle.Round(time.Second))
}

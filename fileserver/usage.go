package fileserver

// Per-user limits (Config.MaxFileSize, UserQuota, MaxOpenUploads,
// MaxTransfers). No check lists a bucket: every server keeps an index of
// what each user stores and moves, fed by watches of storage:
//
//   - files: every live file (owner, size and what a listing shows), from
//     the object store's meta messages; listings and the purge of a
//     replaced version read it too (catalog.go);
//   - uploads: the owner, announced size, stored bytes (as of the last
//     checkpoint) and last activity of every unfinished upload, from the
//     uploads bucket;
//   - downloads: the downloads running, which the servers announce to each
//     other on subjects.TransferEvents as they serve their batches.
//
// A watch lags storage by a moment. A check that would refuse, or pass
// with less than a quarter of a limit to spare, first waits until the
// indexes have caught up with storage as it is then, and looks again:
// nobody is refused because of a file deleted, or an upload finished, a
// moment ago on the other server, and what a user did a moment ago counts
// against their next request wherever it goes (an upload's open always
// waits). Requests racing each other may still overshoot a limit by what
// they bring together.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/bytesize"
	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// syncWait bounds how long a refusal waits for the indexes to catch up.
const syncWait = 5 * time.Second

type uploadUse struct {
	reserve int64     // announced size, or the bytes stored when more or unknown
	active  time.Time // opened, resumed, checkpointed or (direct) its last chunk stored
	direct  bool      // its client stores the chunks and writes no checkpoints
}

// downloadKey names a running download: its user and its reply subject
// without the last token (client.Get asks every batch on prefix.N).
type downloadKey struct{ user, id string }

// usage is a server's index of what each user stores and moves. Its
// methods are the accounting; the watches that feed it are Server methods.
type usage struct {
	mu          sync.Mutex
	files       map[string]fileRecord           // live files by name, as their last meta message says (filerecord.go)
	owners      []string                        // the files' owners, by the number their records hold
	ownerIDs    map[string]uint32               // the numbers of owners
	loading     bool                            // the files watch has not yet delivered what the bucket held as it began
	names       []string                        // names of files, sorted as of the last listing; nil: not sorted (listFiles)
	added       []string                        // names that came since names was sorted
	addedSorted bool                            // added is sorted
	stale       int                             // names that came or went since names was sorted
	filesStale  chan struct{}                   // closed to make the files watch start over
	stored      map[string]int64                // bytes of live files by owner
	filesSeq    uint64                          // last meta message applied
	fullRead    time.Time                       // when the index was last read in full from storage (snapshot.go)
	uploads     map[string]map[string]uploadUse // unfinished uploads by owner and ID
	uploadOwner map[string]string               // owner by upload ID
	uploadsSeq  uint64                          // last uploads bucket revision applied
	downloads   map[downloadKey]time.Time       // running downloads: until when they count
	changed     chan struct{}                   // closed and replaced at every change
}

func newUsage() *usage {
	u := &usage{changed: make(chan struct{})}
	u.resetFiles()
	u.resetUploads()
	u.downloads = map[downloadKey]time.Time{}
	return u
}

// signal wakes the waiters of waitFor; u.mu is held.
func (u *usage) signal() {
	close(u.changed)
	u.changed = make(chan struct{})
}

// resetFiles forgets every file, for a watch that starts over.
func (u *usage) resetFiles() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files, u.stored, u.filesSeq, u.names, u.added, u.stale = map[string]fileRecord{}, map[string]int64{}, 0, nil, nil, 0
	u.owners, u.ownerIDs, u.loading, u.fullRead = nil, map[string]uint32{}, true, time.Time{}
	u.filesStale = make(chan struct{})
}

// resetUploads forgets every upload, for a watch that starts over.
func (u *usage) resetUploads() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.uploads, u.uploadOwner, u.uploadsSeq = map[string]map[string]uploadUse{}, map[string]string{}, 0
}

// putFile applies the meta message at stream sequence seq: f.Name now
// holds f, or nothing when it is not live. An empty name only moves the
// sequence on (a message that could not be read).
func (u *usage) putFile(seq uint64, f subjects.FileInfo, live bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	old, had := u.files[f.Name]
	if had {
		owner := u.owners[old.ownerNumber()]
		u.stored[owner] -= old.size()
		if u.stored[owner] == 0 {
			delete(u.stored, owner)
		}
		delete(u.files, f.Name)
	}
	live = live && f.Name != ""
	if live {
		r := u.pack(f, seq)
		u.files[r.name()] = r // the key shares the record's memory
		u.stored[f.Owner] += f.Size
		if !had {
			u.nameCame(r.name())
		}
	} else if had {
		u.nameWent()
	}
	u.filesSeq = max(u.filesSeq, seq)
	u.signal()
}

// putUpload applies the uploads bucket entry at revision seq: the record of
// upload id, or nil when it is gone. A committed upload is no longer
// counted: its file is.
func (u *usage) putUpload(seq uint64, id string, rec *uploadRecord) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if owner, ok := u.uploadOwner[id]; ok {
		delete(u.uploads[owner], id)
		if len(u.uploads[owner]) == 0 {
			delete(u.uploads, owner)
		}
		delete(u.uploadOwner, id)
	}
	if rec != nil && rec.Committed == nil {
		if u.uploads[rec.Owner] == nil {
			u.uploads[rec.Owner] = map[string]uploadUse{}
		}
		u.uploads[rec.Owner][id] = uploadUse{reserve: max(rec.Size, rec.Bytes), active: rec.Updated, direct: rec.Direct}
		u.uploadOwner[id] = rec.Owner
	}
	u.uploadsSeq = max(u.uploadsSeq, seq)
	u.signal()
}

// waitFor waits until the indexes hold storage up to the given sequences.
func (u *usage) waitFor(ctx context.Context, filesSeq, uploadsSeq uint64) error {
	for {
		u.mu.Lock()
		atFiles, atUploads := u.filesSeq, u.uploadsSeq
		changed := u.changed
		u.mu.Unlock()
		if atFiles >= filesSeq && atUploads >= uploadsSeq {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("usage index at files %d, uploads %d of %d, %d: %w", atFiles, atUploads, filesSeq, uploadsSeq, ctx.Err())
		case <-changed:
		}
	}
}

// used is what user stores: their live files and their unfinished uploads
// but except.
func (u *usage) used(user, except string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := u.stored[user]
	for id, up := range u.uploads[user] {
		if id != except {
			n += up.reserve
		}
	}
	return n
}

// fileSize is the size of name if user owns it, else 0: what replacing it
// gives back to user's quota.
func (u *usage) fileSize(name, user string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if r, ok := u.files[name]; ok && u.owners[r.ownerNumber()] == user {
		return r.size()
	}
	return 0
}

// unfinishedUploads counts every user's unfinished uploads.
func (u *usage) unfinishedUploads() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.uploadOwner)
}

// openUploads counts user's unfinished uploads.
func (u *usage) openUploads(user string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.uploads[user])
}

// transfers counts user's transfers running at now: uploads active within
// TransferIdle and downloads still counting, but except.
func (u *usage) transfers(user string, now time.Time, except downloadKey) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, up := range u.uploads[user] {
		if now.Sub(up.active) < TransferIdle {
			n++
		}
	}
	for k, until := range u.downloads {
		if k.user == user && k != except && now.Before(until) {
			n++
		}
	}
	return n
}

// quietDirect lists user's direct uploads that look idle at now: their
// records tell only when they were opened or resumed.
func (u *usage) quietDirect(user string, now time.Time) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var ids []string
	for id, up := range u.uploads[user] {
		if up.direct && now.Sub(up.active) >= TransferIdle {
			ids = append(ids, id)
		}
	}
	return ids
}

// storedAt records that upload id stored a chunk at t.
func (u *usage) storedAt(id string, t time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if up, ok := u.uploads[u.uploadOwner[id]][id]; ok && t.After(up.active) {
		up.active = t
		u.uploads[u.uploadOwner[id]][id] = up
	}
}

// running says whether a download counts at now.
func (u *usage) running(k downloadKey, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return now.Before(u.downloads[k])
}

// download records that k counts until then (a zero time: it has ended),
// and forgets the downloads that no longer count.
func (u *usage) download(k downloadKey, until time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if until.IsZero() {
		delete(u.downloads, k)
		return
	}
	if _, ok := u.downloads[k]; !ok {
		now := time.Now()
		for old, t := range u.downloads {
			if !now.Before(t) {
				delete(u.downloads, old)
			}
		}
	}
	u.downloads[k] = until
}

// followUsage keeps the indexes until the server stops, starting a watch
// over after a failure.
func (s *Server) followUsage() {
	var wg sync.WaitGroup
	keep := func(what string, reset func(), watch func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.keepWatching(what, reset, watch)
		}()
	}
	keep("uploads", s.usage.resetUploads, s.watchUploads)
	keep("files", s.usage.resetFiles, s.watchFiles)
	sub, err := s.nc.Subscribe(subjects.TransferEvents, s.takeDownloadNotice)
	if err != nil {
		s.log.Error("cannot follow the other servers' downloads; transfers are counted on this server only", "err", err)
	}
	<-s.ctx.Done()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	wg.Wait()
}

func (s *Server) keepWatching(what string, reset func(), watch func(context.Context) error) {
	backoff := 250 * time.Millisecond
	for s.ctx.Err() == nil {
		err := watch(s.ctx)
		if s.ctx.Err() != nil {
			return
		}
		// What the watch missed cannot be told: read it all again.
		reset()
		s.log.Debug("usage watch restarting", "index", what, "err", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// watchUploads feeds the uploads index from the uploads bucket until ctx
// ends or the consumer fails.
func (s *Server) watchUploads(ctx context.Context) error {
	prefix := strings.TrimSuffix(subjects.KVSubjects(subjects.UploadsBucket), ">")
	return s.store.Follow(ctx, subjects.KVStream(subjects.UploadsBucket), subjects.KVSubjects(subjects.UploadsBucket), 0, nil,
		func(md *jetstream.MsgMetadata, m jetstream.Msg) {
			id := strings.TrimPrefix(m.Subject(), prefix)
			var rec *uploadRecord
			if m.Headers().Get(store.KVOperationHeader) == "" {
				rec = new(uploadRecord)
				if json.Unmarshal(m.Data(), rec) != nil {
					rec = nil
				}
			} else {
				// Aborted or expired, maybe by another server: a writer
				// this one still runs for it would wait for chunks forever.
				s.holders.dropLater(id)
			}
			s.usage.putUpload(md.Sequence.Stream, id, rec)
		})
}

// watchFiles feeds the files index from the object store's meta messages
// until ctx ends or the consumer fails. A consumer rather than
// ObjectStore.Watch: a refusal waits for a stream sequence (syncUsage).
// The first watch of a server starts from the index's snapshot when it has
// a good one (snapshot.go), and reads only the meta messages after it.
func (s *Server) watchFiles(ctx context.Context) error {
	s.usage.mu.Lock()
	stale := s.usage.filesStale
	s.usage.mu.Unlock()
	began, loaded := time.Now(), false
	last, err := s.lastFileChange(ctx)
	if err != nil {
		// Without it, an index with nothing to load could not tell that
		// it is loaded.
		return err
	}
	from := uint64(0)
	if s.snapshotTried.CompareAndSwap(false, true) {
		from = s.loadSnapshot(ctx)
	}
	done := func() {
		loaded = true
		n := s.usage.filesLoaded(from == 0, began)
		// The bench reads this line (scale phase).
		s.log.Info("files index loaded", "files", n, "from_snapshot", from > 0, "took", time.Since(began).Round(time.Millisecond),
			"since_start", time.Since(s.started).Round(time.Millisecond))
		if from > 0 {
			s.snapshotStillGood(ctx, from)
		}
	}
	if last <= from {
		// No meta to load: no message will say the load is over.
		done()
	}
	err = s.store.Follow(ctx, subjects.ObjectStream(s.cfg.Bucket), subjects.ObjectMetas(s.cfg.Bucket), from, stale,
		func(md *jetstream.MsgMetadata, m jetstream.Msg) {
			f, live, err := decodeMeta(m.Data(), md.Timestamp)
			if err != nil {
				s.log.Warn("unreadable file meta message; not counted", "seq", md.Sequence.Stream, "err", err)
			}
			s.usage.putFile(md.Sequence.Stream, f, live)
			if !loaded && md.NumPending == 0 {
				// What the bucket held as the watch began is in.
				done()
			}
		})
	if errors.Is(err, store.ErrWatchStopped) {
		return errors.New("storage holds less than the index: read it afresh")
	}
	return err
}

// snapshotStillGood checks, once the index has caught up from a snapshot
// at seq, that no sweep purged a tombstone past seq while it did: the
// index could have missed that delete. It then starts over from storage.
func (s *Server) snapshotStillGood(ctx context.Context, seq uint64) {
	purged, _, err := s.tombstonesPurged(ctx)
	if err == nil && purged <= seq {
		return
	}
	s.log.Warn("a sweep purged deletes while the files index caught up from its snapshot; reading every file", "purged", purged, "snapshot", seq, "err", err)
	s.usage.startOver()
}

// metaFields are the fields of a meta message (a jetstream.ObjectInfo) the
// files index keeps: decoding the whole ObjectInfo made a map of its
// metadata, and more, for every file at every start.
type metaFields struct {
	Name     string `json:"name"`
	Metadata struct {
		Owner string `json:"ftfs-owner"` // subjects.MetaOwner
	} `json:"metadata"`
	NUID    string    `json:"nuid"`
	Size    uint64    `json:"size"`
	ModTime time.Time `json:"mtime"`
	Chunks  uint32    `json:"chunks"`
	Digest  string    `json:"digest"`
	Deleted bool      `json:"deleted"`
}

// decodeMeta reads a meta message stored at stored as fileInfo(info) with
// modTime would, and says whether it is live. An unreadable one is not.
func decodeMeta(data []byte, stored time.Time) (subjects.FileInfo, bool, error) {
	var m metaFields
	if err := json.Unmarshal(data, &m); err != nil {
		return subjects.FileInfo{}, false, err
	}
	if m.ModTime.IsZero() {
		m.ModTime = stored // as a listing says it (modTime)
	}
	return subjects.FileInfo{Name: m.Name, Size: int64(m.Size), Modified: m.ModTime, Owner: m.Metadata.Owner,
		Digest: m.Digest, Version: m.NUID, Chunks: m.Chunks}, !m.Deleted, nil
}

// syncUsage waits until the indexes hold every change storage has
// acknowledged so far.
func (s *Server) syncUsage(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, syncWait)
	defer cancel()
	if s.cfg.UserQuota > 0 {
		if err := s.syncFiles(ctx); err != nil {
			return err
		}
	}
	var uploadsSeq uint64
	err := s.store.RetryRead(ctx, subjects.KVStream(subjects.UploadsBucket), func(ctx context.Context) error {
		st, err := s.js.Stream(ctx, subjects.KVStream(subjects.UploadsBucket))
		if err == nil {
			uploadsSeq = st.CachedInfo().State.LastSeq
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("last upload change: %w", err)
	}
	return s.usage.waitFor(ctx, 0, uploadsSeq)
}

// limited runs check, a limit check on the indexes, first against limits
// a quarter lower (near): a pass with that much room to spare needs no
// more. Otherwise the indexes catch up with storage and check runs against
// the real limits: a refusal must not rest on a change this server has not
// seen yet (or on an index still loading, after a start or a watch that
// failed), and a pass near a limit must not miss what the user did a moment
// ago on the other server.
func (s *Server) limited(ctx context.Context, check func(near bool) error) error {
	if err := check(true); err == nil {
		return nil
	}
	return s.synced(ctx, check)
}

// synced runs check against the real limits once the indexes have caught
// up with storage.
func (s *Server) synced(ctx context.Context, check func(near bool) error) error {
	if err := s.syncUsage(ctx); err != nil {
		s.log.Warn("usage index may lag storage; checking limits on it as it is", "err", err)
	}
	return check(false)
}

// lowered is limit, or a quarter less (at least 1) when near.
func lowered[N int | int64](limit N, near bool) N {
	if near {
		return limit - max(1, limit/4)
	}
	return limit
}

// admitUpload checks that user may open an upload of size bytes (-1:
// unknown); credit is the size of the user's own file it replaces. An open
// starts a transfer of more than one request, so it can afford to check on
// indexes brought up to date, which takes a moment: an index lagging by two
// opens made on the other server would let a third one past a limit of
// two. When they cannot be brought up to date at once (a broker's death
// leaves a watch behind, or its stream without a leader, for seconds), a
// check with a quarter of every limit to spare is enough, as for any other
// request, and only an open near a limit waits for them.
func (s *Server) admitUpload(ctx context.Context, user string, size, credit int64) error {
	if s.cfg.MaxOpenUploads <= 0 && s.cfg.MaxTransfers <= 0 && s.cfg.UserQuota <= 0 {
		return nil
	}
	check := func(near bool) error {
		if limit := s.cfg.MaxOpenUploads; limit > 0 {
			if n := s.usage.openUploads(user); n >= lowered(limit, near) {
				return subjects.Errorf(subjects.CodeQuota, "%s has %d unfinished uploads, the most a user may have: finish or abort one (an upload idle for %v is dropped)", user, n, s.cfg.UploadIdle)
			}
		}
		if err := s.checkTransfers(ctx, user, downloadKey{}, near); err != nil {
			return err
		}
		return s.checkQuota(user, "", max(size, 0), credit, near)
	}
	return s.onIndexesNow(ctx, s.syncUsage, check)
}

// onIndexesNow runs check against the real limits once sync has brought
// the indexes up to date. When it cannot within syncQuick (a broker's
// death leaves a watch behind, or its stream without a leader, for
// seconds), a check with a quarter of every limit to spare is enough, and
// only a check near a limit waits for them, as long as a refusal would.
func (s *Server) onIndexesNow(ctx context.Context, sync func(context.Context) error, check func(near bool) error) error {
	quick, cancel := context.WithTimeout(ctx, syncQuick)
	err := sync(quick)
	cancel()
	if err == nil {
		return check(false)
	}
	if check(true) == nil {
		return nil
	}
	return s.synced(ctx, check)
}

// syncQuick is how long an upload's open waits for the indexes before it
// settles for a check with room to spare: bringing them up to date takes
// milliseconds while every stream has its leader and every watch its
// consumer.
const syncQuick = time.Second

// checkTransfers refuses a transfer to a user running the most at once
// (lowered when near).
func (s *Server) checkTransfers(ctx context.Context, user string, except downloadKey, near bool) error {
	limit := s.cfg.MaxTransfers
	if limit <= 0 {
		return nil
	}
	s.directActivity(ctx, user)
	if n := s.usage.transfers(user, time.Now(), except); n >= lowered(limit, near) {
		return subjects.Errorf(subjects.CodeQuota, "%s is running %d transfers, the most a user may run at once: wait for one to finish", user, n)
	}
	return nil
}

// directActivity brings the activity of user's direct uploads that look
// idle up to the time of their last chunk stored, which only the stream
// knows: a direct upload runs for as long as its client publishes.
func (s *Server) directActivity(ctx context.Context, user string) {
	for _, id := range s.usage.quietDirect(user, time.Now()) {
		if m, err := s.leaderGet(ctx, store.MsgRequest{LastFor: s.chunkSubject(id)}); err == nil {
			s.usage.storedAt(id, m.Time)
		}
	}
}

// admitTransfer checks that the user may start a transfer made in one
// request (subjects.Put, subjects.Get): however short, it counts as one.
func (s *Server) admitTransfer(c *call) error {
	if s.cfg.MaxTransfers <= 0 {
		return nil
	}
	return s.limited(c.ctx, func(near bool) error { return s.checkTransfers(c.ctx, c.user, downloadKey{}, near) })
}

// checkQuota refuses to let user store size bytes for the upload except
// (which the index may count already) when that takes them past the quota
// (lowered when near); credit is what the file it replaces gives back.
func (s *Server) checkQuota(user, except string, size, credit int64, near bool) error {
	quota := s.cfg.UserQuota
	more := size - credit
	if quota <= 0 || more <= 0 {
		return nil
	}
	used := s.usage.used(user, except)
	if used+more <= lowered(quota, near) {
		return nil
	}
	return subjects.Errorf(subjects.CodeQuota, "storage quota reached: %s uses %s of %s, and this upload needs %s more", user, bytesize.Format(used), bytesize.Format(quota), bytesize.Format(more))
}

// checkFileSize refuses a file of size bytes over the maximum.
func (s *Server) checkFileSize(name string, size int64) error {
	if limit := s.cfg.MaxFileSize; limit > 0 && size > limit {
		return subjects.Errorf(subjects.CodeTooLarge, "%q: %s is over the maximum file size of %s", name, bytesize.Format(size), bytesize.Format(limit))
	}
	return nil
}

// ownSize is the size of o if it is live and user owns it, else 0.
func ownSize(o object, user string) int64 {
	if o.live() && o.owner() == user {
		return int64(o.info.Size)
	}
	return 0
}

// admitCommit checks an upload's actual size before it becomes its file,
// replacing replaced.
func (s *Server) admitCommit(ctx context.Context, rec uploadRecord, replaced object) error {
	if err := s.checkFileSize(rec.Name, rec.Bytes); err != nil {
		return err
	}
	if s.cfg.UserQuota <= 0 {
		return nil
	}
	credit := ownSize(replaced, rec.Owner)
	check := func(near bool) error { return s.checkQuota(rec.Owner, rec.ID, rec.Bytes, credit, near) }
	// A file stored a moment ago through the other server counts: the
	// files index catches up with storage first (one read through the
	// files stream's leader, and the index's watch, milliseconds). With
	// a check with room to spare instead, a small put accepted 16 ms
	// after another server stored a file went past the quota (CI,
	// TestUserQuota). While the index cannot catch up at once, room to
	// spare is enough, as at an open.
	return s.onIndexesNow(ctx, s.syncFiles, check)
}

// syncFiles waits until the files index holds every file change storage
// has acknowledged so far.
func (s *Server) syncFiles(ctx context.Context) error {
	return s.catchUpFiles(ctx, false, func(ctx context.Context, seq uint64) error { return s.usage.waitFor(ctx, seq, 0) })
}

// admitChunk checks a chunk of n bytes before it is stored: an upload may
// not grow past the maximum file size, nor past its announced size beyond
// the quota, counting the chunks in flight before it. It runs on the
// upload's writer, which owns u.rec and u.inflight.
func (u *upload) admitChunk(n int) error {
	s := u.s
	after := u.rec.Bytes + int64(n)
	for _, p := range u.inflight {
		after += int64(len(p.data))
	}
	if err := s.checkFileSize(u.rec.Name, after); err != nil {
		return fmt.Errorf("%w; nothing was stored", err)
	}
	if s.cfg.UserQuota <= 0 || after <= u.rec.Size {
		return nil // open checked the announced size
	}
	credit := s.usage.fileSize(u.rec.Name, u.rec.Owner)
	ctx, cancel := context.WithTimeout(u.ctx, syncWait)
	defer cancel()
	err := s.limited(ctx, func(near bool) error { return s.checkQuota(u.rec.Owner, u.rec.ID, after, credit, near) })
	if err != nil {
		return fmt.Errorf("%w; nothing was stored", err)
	}
	return nil
}

// drop ends an upload refused for a limit: its chunks and record go at once
// (not when the janitor finds it idle), from another goroutine, since
// aborting stops this writer.
func (u *upload) drop(err error) {
	s, id := u.s, u.rec.ID
	s.log.Info("upload refused: over a limit", "upload", id, "name", u.rec.Name, "user", u.rec.Owner, "err", err)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		defer cancel()
		s.abortUpload(ctx, id)
	}()
}

// downloadNotice tells the other servers about a download this one serves
// a batch of (subjects.TransferEvents).
type downloadNotice struct {
	Instance string `json:"instance"`
	User     string `json:"user"`
	Download string `json:"download"`
	// LeaseMS is how long, in milliseconds, the download counts from now;
	// 0 means it has ended.
	LeaseMS int64 `json:"lease_ms"`
}

func (s *Server) takeDownloadNotice(m *nats.Msg) {
	var n downloadNotice
	if json.Unmarshal(m.Data, &n) != nil || n.Instance == s.instance || n.User == "" {
		return
	}
	var until time.Time
	if n.LeaseMS > 0 {
		until = time.Now().Add(time.Duration(n.LeaseMS) * time.Millisecond)
	}
	s.usage.download(downloadKey{n.User, n.Download}, until)
}

// admitDownload counts the download batch r of a file of size bytes, and
// refuses the first batch of a download when its user runs the most
// transfers at once. r.Max is set.
func (s *Server) admitDownload(c *call, r subjects.DownloadRequest, size int64) error {
	if s.cfg.MaxTransfers <= 0 {
		return nil
	}
	reply := c.req.Reply()
	k := downloadKey{user: c.user, id: reply[:max(strings.LastIndexByte(reply, '.'), 0)]}
	if r.After == 0 && !s.usage.running(k, time.Now()) {
		if err := s.limited(c.ctx, func(near bool) error { return s.checkTransfers(c.ctx, c.user, k, near) }); err != nil {
			return err
		}
	}
	lease := TransferIdle
	if r.Offset+int64(r.Max)*subjects.ChunkSize >= size {
		lease = 0 // the last batch: the download is done once it is sent
	}
	var until time.Time
	if lease > 0 {
		until = time.Now().Add(lease)
	}
	s.usage.download(k, until)
	body, _ := json.Marshal(downloadNotice{Instance: s.instance, User: k.user, Download: k.id, LeaseMS: lease.Milliseconds()})
	if err := s.nc.Publish(subjects.TransferEvents, body); err != nil {
		s.log.Debug("download notice not sent", "err", err)
	}
	return nil
}

package fileserver

// The watches that feed the usage indexes (usage.go) from storage, and the
// waits for them to catch up with it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

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
	s.changes.begin(last)
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
			s.changeStored(md, m)
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
	uploadsSeq, err := s.store.LastSeq(ctx, subjects.KVStream(subjects.UploadsBucket))
	if err != nil {
		return fmt.Errorf("last upload change: %w", err)
	}
	return s.usage.waitFor(ctx, 0, uploadsSeq)
}

// syncFiles waits until the files index holds every file change storage
// has acknowledged so far.
func (s *Server) syncFiles(ctx context.Context) error {
	return s.catchUpFiles(ctx, false, func(ctx context.Context, seq uint64) error { return s.usage.waitFor(ctx, seq, 0) })
}

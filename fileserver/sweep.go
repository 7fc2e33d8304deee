package fileserver

// The storage sweep. A version's chunks are purged right after the meta
// message that replaced or deleted it (purgeLater), an abandoned upload's by
// the janitor. What neither reaches stays for ever: the content of a
// one-request put whose server died before it wrote the meta, the chunks of
// a version whose server died between the reply and the purge, or whose
// purge failed while storage was unavailable. Deleted names leave their
// tombstone meta, which every listing through the stream reads again, so
// listings slow down as deletes pile up. The sweep finds both once they
// are older than sweepAge and purges each up to the sequence it looked at,
// so that a write made meanwhile stays. When in doubt (an unreadable meta,
// a listing that failed) it purges nothing.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

const (
	// sweepEvery is how often each server sweeps (with some jitter, so that
	// the two rarely sweep together; doing so is harmless).
	sweepEvery = 10 * time.Minute
	// sweepAge is how old unreferenced chunks and tombstones must be. It is
	// far longer than any request that stores content before its meta.
	sweepAge = 10 * time.Minute
)

// sweepResult counts what a sweep purged.
type sweepResult struct {
	Chunks     int // chunk subjects of versions nothing points at
	Tombstones int // metas of deleted names
}

// sweeper runs the storage sweep every sweepEvery until the server stops.
func (s *Server) sweeper() {
	for {
		wait := sweepEvery + rand.N(sweepEvery/4)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		if s.store.ReadOnly() {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
		r, err := s.sweepStorage(ctx, sweepAge)
		cancel()
		switch {
		case err != nil:
			s.log.Warn("storage sweep stopped; nothing more purged", "err", err)
		case r.Chunks+r.Tombstones > 0:
			s.log.Info("storage swept", "orphaned_versions", r.Chunks, "tombstones", r.Tombstones)
		}
	}
}

// sweepStorage purges the chunk subjects (and upload fences) that no meta
// and no upload record points at, and the tombstones of deleted names, when
// their last message is older than age. The last meta message stored is kept even when it is a
// tombstone: the files index takes a stream whose last meta is gone for one
// replaced, and reads it all again.
func (s *Server) sweepStorage(ctx context.Context, age time.Duration) (sweepResult, error) {
	var r sweepResult
	// Chunks first: a version whose chunks are listed here and whose meta
	// is written after the metas are read below is younger than age.
	chunkSubjects, err := s.store.LeaderSubjects(ctx, s.filesStream(), subjects.ObjectChunksAll(s.cfg.Bucket))
	if err != nil {
		return r, err
	}
	uploads, err := s.store.LeaderSubjects(ctx, subjects.KVStream(subjects.UploadsBucket), subjects.KVSubjects(subjects.UploadsBucket))
	if err != nil {
		return r, err
	}
	last, err := s.lastFileChange(ctx)
	if err != nil {
		return r, err
	}
	metas, err := s.readMetas(ctx)
	if err != nil {
		return r, err
	}
	keep := map[string]bool{}
	for subj := range uploads {
		keep[strings.TrimPrefix(subj, strings.TrimSuffix(subjects.KVSubjects(subjects.UploadsBucket), ">"))] = true
	}
	var tombstones []metaMessage
	through := uint64(0)
	for _, m := range metas {
		if !m.info.Deleted {
			keep[m.info.NUID] = true
			continue
		}
		if m.seq == last || time.Since(m.time) < age {
			continue
		}
		tombstones = append(tombstones, m)
		through = max(through, m.seq)
	}
	if len(tombstones) > 0 {
		// Recorded first: a snapshot of a files index that predates one
		// of these deletes must not be used once its tombstone is gone.
		if err := s.recordTombstonesPurged(ctx, through); err != nil {
			return r, err
		}
	}
	for _, m := range tombstones {
		if err := s.purgeUpTo(ctx, m.subject, m.seq); err != nil {
			return r, err
		}
		r.Tombstones++
	}
	prefix := s.chunkSubject("")
	for subj := range chunkSubjects {
		if subj == subjects.TombstonesPurged(s.cfg.Bucket) {
			continue
		}
		// A version's chunks, or one of its fences (UploadFence).
		version, _, _ := strings.Cut(strings.TrimPrefix(subj, prefix), ".")
		if keep[version] {
			continue
		}
		m, err := s.leaderGet(ctx, store.MsgRequest{LastFor: subj})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // purged meanwhile
		}
		if err != nil {
			return r, fmt.Errorf("last chunk of %s: %w", subj, err)
		}
		if time.Since(m.Time) < age {
			continue
		}
		if err := s.purgeUpTo(ctx, subj, m.Sequence); err != nil {
			return r, err
		}
		s.log.Info("orphaned chunks purged", "subject", subj, "last_stored", m.Time)
		r.Chunks++
	}
	return r, nil
}

// purgeUpTo purges subject's messages up to and including stream sequence
// seq: one stored after it stays.
func (s *Server) purgeUpTo(ctx context.Context, subject string, seq uint64) error {
	if err := s.store.PurgeSubjectThrough(ctx, subject, seq); err != nil {
		return fmt.Errorf("purge %s up to %d: %w", subject, seq, err)
	}
	return nil
}

// metaMessage is the last message of one meta subject.
type metaMessage struct {
	subject string
	seq     uint64
	time    time.Time
	info    jetstream.ObjectInfo
}

// readMetas reads the last message of every meta subject through the
// stream leader, tombstones included; an unreadable one fails it all.
func (s *Server) readMetas(ctx context.Context) ([]metaMessage, error) {
	metaSubjects, err := s.store.LeaderSubjects(ctx, s.filesStream(), subjects.ObjectMetas(s.cfg.Bucket))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	todo := make(chan string)
	results := make(chan metaMessage)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for subj := range todo {
				m, err := s.leaderGet(ctx, store.MsgRequest{LastFor: subj})
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					continue // purged meanwhile
				}
				mm := metaMessage{subject: subj}
				if err == nil {
					mm.seq, mm.time = m.Sequence, m.Time
					if uerr := json.Unmarshal(m.Data, &mm.info); uerr != nil {
						err = fmt.Errorf("meta %s at %d: %w", subj, m.Sequence, uerr)
					}
				}
				if err != nil {
					fail(err)
					continue
				}
				select {
				case results <- mm:
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() {
		defer close(results)
		defer wg.Wait()
		defer close(todo)
		for subj := range metaSubjects {
			select {
			case todo <- subj:
			case <-ctx.Done():
				return
			}
		}
	}()
	var out []metaMessage
	for mm := range results {
		out = append(out, mm)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

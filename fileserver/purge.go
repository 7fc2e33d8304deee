package fileserver

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"
)

// Purging the chunks of replaced and deleted versions. A version's chunks
// go once no live name points at it: a rename interrupted between its two
// steps can leave two names on one version, and checking keeps the
// survivor readable. The check is a pass over the whole files index, so
// the versions to purge are queued and one worker checks all those queued
// in one pass: a `rm -r` of 10^5 files in an index of 10^6 costs a pass
// per batch, where a pass per file was minutes of a core.

// purgeQueue holds the versions waiting for purger.
type purgeQueue struct {
	mu      sync.Mutex
	pending map[string]uint64 // version -> meta sequence that replaced or deleted it
	wake    chan struct{}     // holds a token while pending is not empty
}

func newPurgeQueue() *purgeQueue {
	return &purgeQueue{pending: map[string]uint64{}, wake: make(chan struct{}, 1)}
}

// take empties the queue.
func (q *purgeQueue) take() map[string]uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch := q.pending
	q.pending = map[string]uint64{}
	return batch
}

// purgeLater purges a replaced or deleted version's chunks after the reply,
// once sure that no name points at it any more as of the meta message at
// stream sequence seq, which replaced or deleted it (0: none, no meta ever
// named it).
func (s *Server) purgeLater(nuid string, seq uint64) {
	q := s.purges
	q.mu.Lock()
	q.pending[nuid] = max(q.pending[nuid], seq)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default: // the worker has been woken already
	}
}

// purger purges what purgeLater queues, a batch at a time, until the
// server stops. What is queued when it stops stays in storage until the
// sweep finds it.
func (s *Server) purger() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.purges.wake:
		}
		batch := s.purges.take()
		if len(batch) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
		s.purgeUnreferenced(ctx, batch)
		cancel()
	}
}

// purgeUnreferenced drops the chunks of the versions in batch that no
// live name points at any more, as of the meta sequences batch holds. It
// waits for the files index to reach the last of them rather than for
// the last meta stored (syncCatalog): finding that one is a scan of the
// stream's last blocks.
func (s *Server) purgeUnreferenced(ctx context.Context, batch map[string]uint64) {
	var held map[string]bool // of the batch's versions, those a live name holds
	switch err := s.catalogAt(ctx, slices.Max(slices.Collect(maps.Values(batch)))); {
	case err == nil:
		var ok bool
		if held, ok = s.usage.holding(batch); !ok {
			return // the index is loading: keep them all, the sweep decides
		}
	case errors.Is(err, errIndexBehind):
		all, err := s.allObjects(ctx)
		if err != nil {
			s.log.Warn("not purging chunks: cannot list files", "versions", len(batch), "err", err)
			return
		}
		held = map[string]bool{}
		for _, o := range all {
			if _, ok := batch[o.NUID]; ok {
				held[o.NUID] = true
			}
		}
	default:
		s.log.Warn("not purging chunks: cannot read the last file change", "versions", len(batch), "err", err)
		return
	}
	for nuid := range batch {
		if held[nuid] {
			continue
		}
		if err := s.store.PurgeSubject(ctx, s.chunkSubject(nuid)); err != nil {
			s.log.Warn("purge chunks", "version", nuid, "err", err)
		}
	}
}

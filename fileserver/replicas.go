package fileserver

// Buckets with fewer replicas than --replicas. A file server makes every
// bucket with its --replicas, but keeps a bucket it finds as it is: one made
// by `ftfs restore` with fewer replicas, or by servers run with a lower
// --replicas before, lives on one broker's disk and dies with it: every
// request then fails, with no read-only mode to fall back on. So each
// server compares every bucket's replicas with its --replicas at start and
// every replicaCheckEvery, warns in its log and in its status, and raises
// them (JetStream copies the stream to the new replicas): --replicas is the
// operator's word on how many copies to keep. It never lowers them.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// replicaCheckEvery is how often a file server compares its buckets'
// replicas with its --replicas.
const replicaCheckEvery = 30 * time.Second

// replicaCheckTimeout bounds each stream info and update of a check.
const replicaCheckTimeout = 10 * time.Second

// replicaShortfalls are the buckets found with fewer replicas than this
// server's --replicas at the last check, by stream, with what raising them
// gave.
type replicaShortfalls struct {
	mu    sync.Mutex
	short map[string]string // stream -> warning
}

func (r *replicaShortfalls) set(stream, warning string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.short == nil {
		r.short = map[string]string{}
	}
	if warning == "" {
		delete(r.short, stream)
		return
	}
	r.short[stream] = warning
}

// warnings lists the shortfalls, sorted.
func (r *replicaShortfalls) warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, w := range r.short {
		out = append(out, w)
	}
	slices.Sort(out)
	return out
}

// watchReplicas checks the buckets' replicas now and every
// replicaCheckEvery, until the server stops.
func (s *Server) watchReplicas() {
	for {
		if !s.store.ReadOnly() {
			s.checkReplicas(s.ctx)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(replicaCheckEvery):
		}
	}
}

// bucketStreams names every bucket's stream, the files bucket first.
func (s *Server) bucketStreams() (buckets, streams []string) {
	buckets = append(buckets, s.cfg.Bucket)
	streams = append(streams, subjects.ObjectStream(s.cfg.Bucket))
	for _, b := range subjects.KVBuckets() {
		buckets = append(buckets, b)
		streams = append(streams, subjects.KVStream(b))
	}
	return buckets, streams
}

// checkReplicas raises the replicas of every bucket that has fewer than
// --replicas, and records a warning for each it could not.
func (s *Server) checkReplicas(ctx context.Context) {
	want := s.cfg.Replicas
	buckets, streams := s.bucketStreams()
	for i, name := range streams {
		if ctx.Err() != nil {
			return
		}
		ictx, cancel := context.WithTimeout(ctx, replicaCheckTimeout)
		info, err := s.store.StreamInfo(ictx, name)
		cancel()
		if err != nil {
			// Reported by status as the stream's error; the last
			// shortfall found, if any, stands.
			s.log.Debug("replica check: stream info", "stream", name, "err", err)
			continue
		}
		cfg := info.Config
		have := cfg.Replicas
		if have >= want {
			s.shortfalls.set(name, "")
			continue
		}
		s.log.Warn("bucket has fewer replicas than --replicas: one broker's loss can lose it; raising them",
			"bucket", buckets[i], "stream", name, "replicas", have, "want", want)
		cfg.Replicas = want
		uctx, cancel := context.WithTimeout(ctx, replicaCheckTimeout)
		err = s.store.UpdateStream(uctx, cfg)
		cancel()
		if err != nil {
			s.log.Warn("raising a bucket's replicas failed; trying again later",
				"bucket", buckets[i], "stream", name, "replicas", have, "want", want, "err", err, "again_in", replicaCheckEvery)
			s.shortfalls.set(name, fmt.Sprintf("bucket %s has %d replica(s), fewer than this server's --replicas %d; raising them failed (%v), tried again every %s",
				buckets[i], have, want, err, replicaCheckEvery))
			continue
		}
		s.log.Warn("bucket's replicas raised; JetStream copies it to the new ones", "bucket", buckets[i], "stream", name, "was", have, "now", want)
		s.shortfalls.set(name, "")
	}
}

// replicaWarnings are the status's warnings about replicas: each bucket
// the status found with fewer than --replicas, and what raising them gave.
func (s *Server) replicaWarnings(streams []subjects.StreamStatus) []string {
	out := s.shortfalls.warnings()
	for _, st := range streams {
		if st.Error != "" || st.Replicas >= s.cfg.Replicas {
			continue
		}
		w := fmt.Sprintf("bucket %s has %d replica(s), fewer than this server's --replicas %d", st.Bucket, st.Replicas, s.cfg.Replicas)
		if !slices.ContainsFunc(out, func(o string) bool { return strings.HasPrefix(o, w) }) {
			out = append(out, w+"; being raised")
		}
	}
	return out
}

package fileserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// streamInfoTimeout bounds each stream info call of a status request: a
// stream without a leader would otherwise hold the reply until the client
// gave up on it, and the other streams' state is worth more than waiting.
const streamInfoTimeout = 2 * time.Second

// status reports this instance, its broker and the streams of its buckets:
// what the old intermediate server monitored, now readable by any user.
func (s *Server) status(c *call) (any, error) {
	if _, err := decodeCall[subjects.Empty](c); err != nil {
		return nil, err // the body is {} or nothing
	}
	st := subjects.StatusReply{
		Instance: s.instance,
		Role:     s.cfg.Role,
		Version:  Version,
		Started:  s.started,
		Errors:   s.errors.Load(),
		Broker: subjects.BrokerStatus{
			Name:    s.nc.ConnectedServerName(),
			URL:     s.nc.ConnectedUrlRedacted(),
			Cluster: s.nc.ConnectedClusterName(),
		},
		Brokers:  s.nc.Servers(),
		Bucket:   subjects.BucketStatus{Name: s.cfg.Bucket},
		ReadOnly: s.store.ReadOnly(),
	}
	if s.cfg.Replica != nil {
		r := s.cfg.Replica()
		st.Replica = &r
	}
	if st.ReadOnly {
		// Without a quorum every JetStream call waits for its deadline:
		// report what this process knows by itself.
		st.Warnings = s.shortfalls.warnings()
		return st, nil
	}
	st.Streams = s.streamStatuses(c.ctx)
	st.Warnings = s.replicaWarnings(st.Streams)
	files := st.Streams[0]
	if files.Error != "" {
		return st, nil // listing the files would fail the same way, slowly
	}
	st.Bucket.Bytes = files.Bytes
	st.Bucket.Replicas = files.Replicas
	st.Bucket.Leader = files.Leader
	st.Bucket.Peers = files.Peers
	st.Bucket.Storage = s.store.ObjectStreamCachedInfo().Config.Storage.String()
	all, err := s.allObjects(c.ctx)
	if err != nil {
		st.Streams[0].Error = fmt.Sprintf("list files: %v", err)
		return st, nil
	}
	st.Bucket.Files = len(all)
	// From the uploads index, not a listing of the bucket: a listing's
	// consumer may be placed on a broker that just died, and then waits
	// out the request; status must answer while a broker is down.
	st.Bucket.Uploads = s.usage.unfinishedUploads()
	return st, nil
}

// streamStatuses asks JetStream about the stream of every bucket at once,
// the files bucket first. A stream that does not answer is reported with
// its error.
func (s *Server) streamStatuses(ctx context.Context) []subjects.StreamStatus {
	out := []subjects.StreamStatus{
		{Bucket: s.cfg.Bucket, Stream: subjects.ObjectStream(s.cfg.Bucket)},
	}
	for _, b := range subjects.KVBuckets() {
		out = append(out, subjects.StreamStatus{Bucket: b, Stream: subjects.KVStream(b)})
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func(st *subjects.StreamStatus) {
			defer wg.Done()
			s.streamStatus(ctx, st)
		}(&out[i])
	}
	wg.Wait()
	return out
}

func (s *Server) streamStatus(ctx context.Context, st *subjects.StreamStatus) {
	ctx, cancel := context.WithTimeout(ctx, streamInfoTimeout)
	defer cancel()
	info, err := s.store.StreamInfo(ctx, st.Stream)
	if err != nil {
		st.Error = wrapStorage("stream info "+st.Stream, err).Error()
		return
	}
	st.Messages = info.State.Msgs
	st.Bytes = info.State.Bytes
	st.Replicas = info.Config.Replicas
	if ci := info.Cluster; ci != nil {
		st.Leader = ci.Leader
		for _, p := range ci.Replicas {
			st.Peers = append(st.Peers, subjects.PeerStatus{Name: p.Name, Current: p.Current, Lag: p.Lag, Active: p.Active, Offline: p.Offline})
		}
	}
}

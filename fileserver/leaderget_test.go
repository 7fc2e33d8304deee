package fileserver

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// TestCountsComeFromTheStreamLeader answers every stream info request a
// second time, as a replica that believes its stream leaderless does: from
// a stale state, naming no leader. The chunk count a commit checks and the
// subject listing the sweep purges by must still be the leader's.
func TestCountsComeFromTheStreamLeader(t *testing.T) {
	s := startTestServer(t, startTestBroker(t), RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := "LEADERCOUNT"
	for range 3 {
		if _, err := s.store.JetStream().Publish(ctx, s.chunkSubject(id), []byte("chunk")); err != nil {
			t.Fatal(err)
		}
	}
	var staleAnswers atomic.Int64
	stale, _ := json.Marshal(map[string]any{
		"type":    "io.nats.jetstream.api.v1.stream_info_response",
		"total":   1,
		"cluster": map[string]any{"name": "ftfs"},
		"state":   map[string]any{"subjects": map[string]uint64{s.chunkSubject(id): 1}},
	})
	sub, err := s.nc.Subscribe(subjects.StreamInfo(s.filesStream()), func(m *nats.Msg) {
		if m.Respond(stale) == nil {
			staleAnswers.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for i := range 30 {
		n, err := s.storedChunks(ctx, id)
		if err != nil || n != 3 {
			t.Fatalf("round %d: storedChunks = %d, %v; want the leader's 3", i, n, err)
		}
		listed, err := s.store.LeaderSubjects(ctx, s.filesStream(), subjects.ObjectChunksAll(s.cfg.Bucket))
		if err != nil || listed[s.chunkSubject(id)] != 3 {
			t.Fatalf("round %d: listing = %v, %v; want %s: 3", i, listed, err, s.chunkSubject(id))
		}
	}
	if staleAnswers.Load() == 0 {
		t.Fatal("no stale answer was sent: the test checks nothing")
	}
}

// TestBucketsReadThroughTheirLeader checks the buckets two servers create
// together: every key-value stream refuses direct gets (a lagging follower
// could answer them), and binding as a nats.go KeyValue still works.
func TestBucketsReadThroughTheirLeader(t *testing.T) {
	url := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type started struct {
		s   *Server
		err error
	}
	done := make(chan started, 2)
	for _, role := range []string{RolePrimary, RoleBackup} {
		go func() {
			s, err := Start(ctx, Config{Servers: []string{url}, ServicePassword: testServicePassword, Role: role, Logger: startTestLogger()})
			done <- started{s, err}
		}()
	}
	var s *Server
	for range 2 {
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(r.s.Stop)
		s = r.s
	}
	for _, b := range subjects.KVBuckets() {
		st, err := s.store.JetStream().Stream(ctx, subjects.KVStream(b))
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().Config.AllowDirect {
			t.Errorf("%s allows direct gets", b)
		}
		if _, err := s.store.JetStream().KeyValue(ctx, b); err != nil {
			t.Errorf("bind %s: %v", b, err)
		}
	}
}

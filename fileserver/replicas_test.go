package fileserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// TestABucketWithFewerReplicasIsReported: a server told --replicas 3 that
// finds its files bucket at one replica warns in its status, and says so
// when raising them fails (here a single broker, which keeps one only).
// The raise itself runs on a cluster in the end-to-end restore tests.
func TestABucketWithFewerReplicasIsReported(t *testing.T) {
	url := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := store.Connect(ctx, store.Dialer{Servers: []string{url}, Password: testServicePassword, Log: startTestLogger()}, errReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.JetStream().CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: subjects.FilesBucket, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{Bucket: subjects.FilesBucket, Replicas: 3}, store: st, log: startTestLogger()}

	s.checkReplicas(ctx)
	warnings := s.replicaWarnings(s.streamStatuses(ctx))
	if len(warnings) != 1 || !strings.Contains(warnings[0], "bucket "+subjects.FilesBucket+" has 1 replica(s), fewer than this server's --replicas 3; raising them failed") {
		t.Fatalf("warnings %q", warnings)
	}

	// Told one replica, as the bucket has, it has nothing to say.
	s.cfg.Replicas = 1
	s.checkReplicas(ctx)
	if warnings := s.replicaWarnings(s.streamStatuses(ctx)); len(warnings) != 0 {
		t.Fatalf("warnings at --replicas 1: %q", warnings)
	}
}

package primary

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// TestRetriesGoAgainAtALeaderElection checks that a storage call failing
// while a stream has no leader is tried again as soon as JetStream
// announces a new one, not after its back-off: twelve failures in a row
// back off for over three minutes, far longer than the test may take.
func TestRetriesGoAgainAtALeaderElection(t *testing.T) {
	s := startTestServer(t, startTestBroker(t), RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// JetStream's announcements of new leaders, over and over.
	announcing, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			_ = s.nc.Publish(subjects.StreamLeaderElected(subjects.ObjectStream(subjects.FilesBucket)), []byte("{}"))
			select {
			case <-announcing.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { stop(); wg.Wait() }()

	const failures = 12
	attempts := 0
	err := s.retryStorage(ctx, time.Second, time.Hour, func(context.Context) error {
		attempts++
		if attempts <= failures {
			return nats.ErrNoResponders // as while the stream has no leader
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after %d attempts: %v", attempts, err)
	}
}

// TestKVHoldsReadsTheLatestValueThroughTheLeader checks how a write whose
// answer was lost is recognised: the key's latest value, read through the
// stream leader, is these very bytes (at that revision), and nothing else
// is taken for it, a deleted key included.
func TestKVHoldsReadsTheLatestValueThroughTheLeader(t *testing.T) {
	s := startTestServer(t, startTestBroker(t), RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rev, err := s.uploads.Create(ctx, "lost-answer", []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.kvHolds(ctx, s.uploads, "lost-answer", []byte("first")); !ok || got != rev || err != nil {
		t.Fatalf("kvHolds of the value written = %d, %v, %v; want %d, true", got, ok, err, rev)
	}
	if _, ok, err := s.kvHolds(ctx, s.uploads, "lost-answer", []byte("other")); ok || err != nil {
		t.Fatal("kvHolds took other bytes for the value written")
	}
	if err := s.uploads.Delete(ctx, "lost-answer"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.kvHolds(ctx, s.uploads, "lost-answer", nil); ok || err != nil {
		t.Fatal("kvHolds took a delete marker for a value")
	}
	if _, ok, err := s.kvHolds(ctx, s.uploads, "never-written", nil); ok || err != nil {
		t.Fatal("kvHolds found a key never written")
	}
}

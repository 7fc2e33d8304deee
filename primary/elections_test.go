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

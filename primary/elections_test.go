package primary

import (
	"context"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// TestAReadInFlightGoesAgainAtALeaderElection checks that a storage read
// sent to a stream leader that died (never answered) is sent again as soon
// as JetStream announces a new leader, not after its attempt's timeout
// (an hour here, longer than the test may take).
func TestAReadInFlightGoesAgainAtALeaderElection(t *testing.T) {
	s := startTestServer(t, startTestBroker(t), RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	attempts := 0
	err := s.retryStorage(ctx, time.Hour, time.Hour, true, func(actx context.Context) error {
		attempts++
		if attempts > 1 {
			return nil
		}
		// The announcement JetStream makes when a stream has a new leader
		// (sent until heard: the server subscribes as it starts).
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := s.nc.Publish(subjects.StreamLeaderElected(subjects.KVStream(subjects.SessionsBucket)), []byte("{}")); err != nil {
				t.Errorf("announce an election: %v", err)
			}
			select {
			case <-actx.Done():
				return actx.Err()
			case <-tick.C:
			}
		}
	})
	if err != nil {
		t.Fatalf("read: %v (after %d attempts)", err, attempts)
	}
	if attempts != 2 {
		t.Fatalf("read attempted %d times, want 2", attempts)
	}
}

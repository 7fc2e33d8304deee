package store

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
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
	s := newStore(nil, nil, slog.Default(), errors.New("read-only"))
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
			s.elections.elected(subjects.ObjectStream(subjects.FilesBucket)) // as JetStream's advisory would (no identity but JetStream may publish it)
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
	err := s.retryStorage(ctx, subjects.ObjectStream(subjects.FilesBucket), time.Second, time.Hour, func(context.Context) error {
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

// TestAnUnansweredCallGoesAgainAtALeaderElection checks that a storage call
// sent to a leader that died (never answered) is sent again when a new
// leader is announced, not at the end of its attempt.
func TestAnUnansweredCallGoesAgainAtALeaderElection(t *testing.T) {
	s := newStore(nil, nil, slog.Default(), errors.New("read-only"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	announced := make(chan struct{})
	var attempts atomic.Int32
	start := time.Now()
	stream := subjects.ObjectStream(subjects.FilesBucket)
	err := s.retryStorage(ctx, stream, 15*time.Second, time.Second, func(actx context.Context) error {
		if attempts.Add(1) > 1 {
			return nil
		}
		// The first one goes unanswered until its stream's leader is
		// elected, and past it; another stream's election first changes
		// nothing.
		go func() {
			defer close(announced)
			s.elections.elected(subjects.KVStream(subjects.UsersBucket)) // as JetStream's advisory would (no identity but JetStream may publish it)
			time.Sleep(600 * time.Millisecond)
			if attempts.Load() != 1 {
				t.Error("another stream's election cut the call short")
			}
			s.elections.elected(stream) // as JetStream's advisory would (no identity but JetStream may publish it)
		}()
		<-actx.Done()
		return actx.Err()
	})
	<-announced
	if err != nil || attempts.Load() != 2 {
		t.Fatalf("retryStorage = %v after %d attempts; want success at the second", err, attempts.Load())
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the call went again after %v: it waited for its attempt's end, not for the election", took)
	}
}

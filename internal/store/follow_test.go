package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// connectStore opens a Store on sys's brokers, as a file server would.
func connectStore(ctx context.Context, t *testing.T, sys *ftfstest.System, name string, log *slog.Logger) *Store {
	t.Helper()
	st, err := Connect(ctx, Dialer{Servers: strings.Split(sys.URLs(), ","), Name: name, Password: sys.ServicePassword, Log: log}, errors.New("read-only"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// brokerAt names the broker of sys whose client URL is url.
func brokerAt(t *testing.T, sys *ftfstest.System, url string) string {
	t.Helper()
	for _, name := range sys.BrokerNames() {
		if sys.Process(name).URL() == url {
			return name
		}
	}
	t.Fatalf("no broker at %q", url)
	return ""
}

// followed records what a Follow hands over.
type followed struct {
	mu   sync.Mutex
	seqs []uint64
}

func (f *followed) take(md *jetstream.MsgMetadata, _ jetstream.Msg) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seqs = append(f.seqs, md.Sequence.Stream)
}

func (f *followed) last() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seqs) == 0 {
		return 0
	}
	return f.seqs[len(f.seqs)-1]
}

// TestFollowKeepsDeliveringThroughBrokerDeaths checks that a Follow of an
// R3 bucket hands over every message, once and in order, while the broker
// its connection is on, the one holding its consumer and the stream's
// leader die or freeze in turn. nats.go's ordered consumer, replacing its
// consumer as its connection moves to another broker, may have the new
// one placed on the broker that just died, and then asks for it there
// without end: without Follow's own check, one run in three here handed
// over nothing for a minute after the death of the follower's broker.
func TestFollowKeepsDeliveringThroughBrokerDeaths(t *testing.T) {
	if testing.Short() {
		t.Skip("three brokers killed and started again: a minute")
	}
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	quiet := slog.New(slog.DiscardHandler)
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	writer := connectStore(ctx, t, sys, "writer", quiet)
	var kv jetstream.KeyValue
	ftfstest.Eventually(t, time.Minute, "an R3 uploads bucket", func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		var err error
		kv, err = writer.JetStream().CreateKeyValue(cctx, jetstream.KeyValueConfig{Bucket: subjects.UploadsBucket, Replicas: 3})
		return err == nil
	})
	stream := subjects.KVStream(subjects.UploadsBucket)
	put := func(key string) {
		// A put whose answer was lost may be stored twice: the follower
		// must then hand over both, which the check below allows.
		ftfstest.Eventually(t, time.Minute, "put "+key, func() bool {
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			defer pcancel()
			_, err := kv.Put(pctx, key, []byte(key))
			return err == nil
		})
	}
	lastStored := func() uint64 {
		var last uint64
		ftfstest.Eventually(t, time.Minute, "the stream's last sequence", func() bool {
			lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
			defer lcancel()
			var err error
			last, err = writer.LastSeq(lctx, stream)
			return err == nil
		})
		return last
	}

	follower := connectStore(ctx, t, sys, "follower", log)
	var got followed
	var followErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		followErr = follower.Follow(ctx, stream, subjects.KVSubjects(subjects.UploadsBucket), 0, nil, got.take)
	}()
	// Nothing may log into the test once it is over.
	defer func() { cancel(); <-done }()
	n := 0
	putSome := func() {
		for range 20 {
			n++
			put(fmt.Sprintf("k%d", n))
		}
	}
	caughtUp := func(why string) {
		t.Helper()
		want := lastStored()
		// Generous: the machine is shared; the stall seen lasted minutes.
		ftfstest.Eventually(t, 30*time.Second, fmt.Sprintf("the follower at sequence %d (%s)", want, why), func() bool {
			select {
			case <-done:
				t.Fatalf("follow ended: %v", followErr)
			default:
			}
			return got.last() >= want
		})
	}
	putSome()
	caughtUp("before any death")

	consumerHost := func() string {
		var host string
		ftfstest.Eventually(t, time.Minute, "the follower's consumer", func() bool {
			lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
			defer lcancel()
			s, err := writer.JetStream().Stream(lctx, stream)
			if err != nil {
				return false
			}
			names := s.ConsumerNames(lctx)
			for name := range names.Name() {
				info, err := s.Consumer(lctx, name)
				if err == nil && info.CachedInfo().Cluster != nil && info.CachedInfo().Cluster.Leader != "" {
					host = info.CachedInfo().Cluster.Leader
				}
			}
			return host != ""
		})
		return host
	}
	streamLeader := func() string {
		var leader string
		ftfstest.Eventually(t, time.Minute, "the stream's leader", func() bool {
			lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
			defer lcancel()
			s, err := writer.JetStream().Stream(lctx, stream)
			if err == nil && s.CachedInfo().Cluster != nil {
				leader = s.CachedInfo().Cluster.Leader
			}
			return leader != ""
		})
		return leader
	}
	followersBroker := func() string { return brokerAt(t, sys, follower.Conn().ConnectedUrl()) }
	victims := []struct {
		what   string
		find   func() string
		freeze bool // SIGSTOP rather than SIGKILL: its connections stay open
	}{
		{"the consumer's broker", consumerHost, true},
		{"the follower's broker", followersBroker, false},
		{"the consumer's broker", consumerHost, false},
		{"the stream's leader", streamLeader, false},
		{"the follower's broker", followersBroker, true},
	}
	for _, v := range victims {
		name := v.find()
		if v.freeze {
			why := fmt.Sprintf("%s, %s, frozen", v.what, name)
			t.Logf("%s: freezing it", why)
			sys.Freeze(t, name)
			putSome()
			caughtUp(why)
			sys.Thaw(t, name)
			sys.WaitHealthy(t)
			putSome()
			caughtUp(why + " and thawed")
			continue
		}
		why := fmt.Sprintf("%s, %s, dead", v.what, name)
		t.Logf("%s: killing it", why)
		sys.Kill(t, name)
		putSome()
		caughtUp(why)
		sys.Restart(t, name)
		sys.WaitHealthy(t)
		putSome()
		caughtUp(why + " and back")
	}

	// Every message the stream holds, once, in order: a put stored twice
	// is two messages, and a sequence the stream skipped is none. Read
	// through the leader: a replica catching up may lack the latest.
	var stored []uint64
	for seq := uint64(1); seq <= lastStored(); seq++ {
		_, err := writer.LeaderGet(ctx, stream, MsgRequest{Seq: seq})
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			t.Fatalf("stream message %d: %v", seq, err)
		default:
			stored = append(stored, seq)
		}
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	if !slices.Equal(got.seqs, stored) {
		t.Fatalf("the follower handed over\n%v\nthe stream holds\n%v", got.seqs, stored)
	}
}

// testLogWriter writes a log into the test's.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

package store

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/broker"
	"github.com/ftfs/ftfs/subjects"
)

const testServicePassword = "service-password-for-tests"

// startTestStore starts a broker and returns a Store on it, with the
// uploads bucket.
func startTestStore(t *testing.T) (*Store, jetstream.KeyValue) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := broker.Start(broker.Config{
		Port: -1, HTTPPort: -1, DataDir: t.TempDir(), ServicePassword: testServicePassword,
		SystemPassword: "system-password-for-tests", Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := Connect(ctx, Dialer{Servers: []string{b.ClientURL()}, Password: testServicePassword, Log: log}, errors.New("read-only"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	uploads, err := st.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: subjects.UploadsBucket})
	if err != nil {
		t.Fatal(err)
	}
	return st, uploads
}

// TestKVHoldsReadsTheLatestValueThroughTheLeader checks how a write whose
// answer was lost is recognised: the key's latest value, read through the
// stream leader, is these very bytes (at that revision), and nothing else
// is taken for it, a deleted key included.
func TestKVHoldsReadsTheLatestValueThroughTheLeader(t *testing.T) {
	s, uploads := startTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rev, err := uploads.Create(ctx, "lost-answer", []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.kvHolds(ctx, uploads, "lost-answer", []byte("first")); !ok || got != rev || err != nil {
		t.Fatalf("kvHolds of the value written = %d, %v, %v; want %d, true", got, ok, err, rev)
	}
	if _, ok, err := s.kvHolds(ctx, uploads, "lost-answer", []byte("other")); ok || err != nil {
		t.Fatal("kvHolds took other bytes for the value written")
	}
	if err := uploads.Delete(ctx, "lost-answer"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.kvHolds(ctx, uploads, "lost-answer", nil); ok || err != nil {
		t.Fatal("kvHolds took a delete marker for a value")
	}
	if _, ok, err := s.kvHolds(ctx, uploads, "never-written", nil); ok || err != nil {
		t.Fatal("kvHolds found a key never written")
	}
}

package fileserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// TestSweepPurgesOrphansAndTombstones leaves in storage what a server
// killed at the wrong moment leaves (chunks no meta points at) next to
// files, a deleted name and an unfinished upload; the sweep purges the
// orphan and the tombstone, once they are old enough, and nothing else.
func TestSweepPurgesOrphansAndTombstones(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	kept := make([]byte, 2*subjects.ChunkSize+5)
	rand.Read(kept)
	for _, name := range []string{"kept.bin", "gone.bin"} {
		if _, err := admin.put(name, kept); err != nil {
			t.Fatal(err)
		}
	}
	gone, err := s.getObject(ctx, "gone.bin")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.call(subjects.Delete, subjects.NameRequest{Name: "gone.bin"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.put("later.bin", []byte("after the delete")); err != nil {
		t.Fatal(err)
	}
	var st subjects.UploadState
	if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "open.bin", Size: 3}, &st); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.sendChunk(st, 0, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	orphan := subjects.ObjectChunks(subjects.FilesBucket, "ORPHANEDVERSION")
	if _, err := s.store.JetStream().Publish(ctx, orphan, []byte("content whose meta was never written")); err != nil {
		t.Fatal(err)
	}
	// The deleted version's chunks go right after the delete.
	waitGone(t, s, subjects.ObjectChunks(subjects.FilesBucket, gone.info.NUID))

	if r, err := s.sweepStorage(ctx, time.Hour); err != nil || r != (sweepResult{}) {
		t.Fatalf("sweep of what is younger than its age: %+v, %v", r, err)
	}
	if r, err := s.sweepStorage(ctx, 0); err != nil || r != (sweepResult{Chunks: 1, Tombstones: 1}) {
		t.Fatalf("sweep: %+v, %v; want the orphan and the tombstone", r, err)
	}
	waitGone(t, s, orphan)
	waitGone(t, s, s.metaSubject("gone.bin"))

	got, err := s.store.Objects().GetBytes(ctx, "kept.bin")
	if err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("kept.bin after the sweep: %v, equal=%v", err, bytes.Equal(got, kept))
	}
	var fi subjects.FileInfo
	if err := admin.call(subjects.UploadCommit, subjects.UploadCommitRequest{Upload: st.Upload, Size: 3, Digest: digestBytes([]byte("abc"))}, &fi); err != nil {
		t.Fatalf("commit of the upload open during the sweep: %v", err)
	}
	if got, err := s.store.Objects().GetBytes(ctx, "open.bin"); err != nil || string(got) != "abc" {
		t.Fatalf("open.bin: %q, %v", got, err)
	}
	var list subjects.ListReply
	if err := admin.call(subjects.List, subjects.ListRequest{}, &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range list.Files {
		names = append(names, f.Name)
	}
	if want := []string{"kept.bin", "later.bin", "open.bin"}; !slices.Equal(names, want) {
		t.Fatalf("listing after the sweep: %v, want %v", names, want)
	}

	// The last meta stored stays, even a tombstone.
	if err := admin.call(subjects.Delete, subjects.NameRequest{Name: "later.bin"}, nil); err != nil {
		t.Fatal(err)
	}
	if r, err := s.sweepStorage(ctx, 0); err != nil || r.Tombstones != 0 {
		t.Fatalf("sweep with a tombstone last: %+v, %v", r, err)
	}
	if _, err := s.store.ObjectStream().GetLastMsgForSubject(ctx, s.metaSubject("later.bin")); err != nil {
		t.Fatalf("the last tombstone: %v", err)
	}
}

func waitGone(t *testing.T, s *Server, subject string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.store.ObjectStream().GetLastMsgForSubject(context.Background(), subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still stored: %v", subject, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

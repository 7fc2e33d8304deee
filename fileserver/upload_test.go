package fileserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// sendChunk sends one chunk and returns the server's answer.
func (u *rawUser) sendChunk(st subjects.UploadState, index int, data []byte) (subjects.ChunkAck, error) {
	u.t.Helper()
	m := nats.NewMsg(subjects.For(u.user, subjects.Chunk(st.Instance)))
	m.Header.Set(subjects.HeaderUpload, st.Upload)
	m.Header.Set(subjects.HeaderChunk, strconv.Itoa(index))
	m.Data = data
	resp, err := u.nc.RequestMsg(m, 5*time.Second)
	if err != nil {
		return subjects.ChunkAck{}, err
	}
	var ack subjects.ChunkAck
	return ack, decodeReply(resp, &ack)
}

func TestChunkBookkeeping(t *testing.T) {
	url := startTestBroker(t)
	startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	var st subjects.UploadState
	if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "b.bin", Size: -1}, &st); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1000)
	rand.Read(chunk)
	if _, err := admin.sendChunk(st, 1, chunk); subjects.CodeOf(err) != subjects.CodeConflict {
		t.Fatalf("chunk out of order: %v, want a conflict", err)
	}
	if ack, err := admin.sendChunk(st, 0, chunk); err != nil || ack.Chunk != 0 || ack.Offset != 1000 {
		t.Fatalf("chunk 0: %+v %v", ack, err)
	}
	if ack, err := admin.sendChunk(st, 0, chunk); err != nil || ack.Offset != 1000 {
		t.Fatalf("repeated chunk 0 must be acknowledged without storing it again: %+v %v", ack, err)
	}
	if _, err := admin.sendChunk(st, 1, make([]byte, subjects.ChunkSize+1)); subjects.CodeOf(err) != subjects.CodeTooLarge {
		t.Fatalf("oversized chunk: %v", err)
	}
	if _, err := admin.sendChunk(subjects.UploadState{Upload: "nosuchupload", Instance: st.Instance}, 0, chunk); subjects.CodeOf(err) != subjects.CodeNotFound {
		t.Fatalf("chunk of an unknown upload: %v", err)
	}
	// Size mismatch at commit: refused, nothing visible, upload gone.
	err := admin.call(subjects.UploadCommit, subjects.UploadCommitRequest{Upload: st.Upload, Size: 999, Digest: "SHA-256=x"}, nil)
	if subjects.CodeOf(err) != subjects.CodeIntegrity {
		t.Fatalf("commit with the wrong size: %v", err)
	}
	if err := admin.call(subjects.UploadResume, subjects.UploadRequest{Upload: st.Upload}, nil); subjects.CodeOf(err) != subjects.CodeNotFound {
		t.Fatalf("upload after a failed commit: %v", err)
	}
}

func TestAbandonedUploadsArePurged(t *testing.T) {
	url := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Servers: []string{url}, ServicePassword: testServicePassword, AdminPassword: "admin-password", Role: RolePrimary, UploadIdle: time.Second, Logger: startTestLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	admin := dialUser(t, url, AdminUser, "admin-password")
	var st subjects.UploadState
	if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "abandoned.bin", Size: -1}, &st); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.sendChunk(st, 0, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	// A direct upload's record is never written after its open: its
	// chunks say whether it is idle.
	var direct subjects.UploadState
	if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "direct.bin", Size: 3 * subjects.ChunkSize, Direct: true}, &direct); err != nil {
		t.Fatal(err)
	}
	for _, up := range []string{direct.Upload, st.Upload} {
		subj := subjects.ObjectChunks(subjects.FilesBucket, up)
		deadline := time.Now().Add(15 * time.Second)
		for i := 0; ; i++ {
			if up == direct.Upload && i < 20 && i%2 == 0 {
				// Active for two seconds, twice the idle time, with
				// no more chunks than its size and a window take.
				if _, err := s.js.Publish(ctx, subj, make([]byte, 10)); err != nil {
					t.Fatal(err)
				}
				if _, err := s.uploads.Get(ctx, up); err != nil {
					t.Fatalf("an active direct upload was dropped: %v", err)
				}
			}
			_, gerr := s.stream.GetLastMsgForSubject(ctx, subj)
			_, kerr := s.uploads.Get(ctx, up)
			if gerr == jetstream.ErrMsgNotFound && kerr == jetstream.ErrKeyNotFound {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("abandoned upload still there: chunk %v, record %v", gerr, kerr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, name := range []string{"abandoned.bin", "direct.bin"} {
		if err := admin.call(subjects.Stat, subjects.NameRequest{Name: name}, nil); subjects.CodeOf(err) != subjects.CodeNotFound {
			t.Fatalf("abandoned upload %s visible: %v", name, err)
		}
	}
}

func TestSessionsEndWithLogoutAndPasswordChange(t *testing.T) {
	url := startTestBroker(t)
	startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	if err := admin.call(subjects.UserAdd, subjects.UserRequest{User: "alice", Password: "alice-password"}, nil); err != nil {
		t.Fatal(err)
	}
	alice1 := dialUser(t, url, "alice", "alice-password")
	alice2 := dialUser(t, url, "alice", "alice-password")
	if err := alice1.call(subjects.WhoAmI, subjects.Empty{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := alice1.call(subjects.Logout, subjects.Empty{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := alice1.call(subjects.WhoAmI, subjects.Empty{}, nil); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("after logout: %v", err)
	}
	if err := alice2.call(subjects.WhoAmI, subjects.Empty{}, nil); err != nil {
		t.Fatalf("the other session must live on: %v", err)
	}
	if err := admin.call(subjects.UserPassword, subjects.UserRequest{User: "alice", Password: "new-password"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := alice2.call(subjects.WhoAmI, subjects.Empty{}, nil); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("after a password change: %v", err)
	}
	if err := admin.call(subjects.UserRemove, subjects.UserRequest{User: "admin"}, nil); subjects.CodeOf(err) != subjects.CodeForbidden {
		t.Fatalf("removing oneself: %v", err)
	}
	if err := admin.call(subjects.List, json.RawMessage(`{"prefix":1}`), nil); subjects.CodeOf(err) != subjects.CodeInvalid {
		t.Fatalf("malformed request: %v", err)
	}
	if err := admin.call(subjects.List, json.RawMessage(`{"bogus":true}`), nil); subjects.CodeOf(err) != subjects.CodeInvalid {
		t.Fatalf("unknown field: %v", err)
	}
}

// A retried delete or rename succeeds even when the outcome of its first
// run was not recorded (its reply lost while the storage was away): the
// written meta carries the request's mark.
func TestRetriedMutationsSeeTheirOwnWork(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	forget := func() {
		t.Helper()
		if err := s.requests.PurgeDeletes(context.Background()); err != nil {
			t.Fatal(err)
		}
		lister, err := s.requests.ListKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for k := range lister.Keys() {
			if err := s.requests.Purge(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := admin.put("a.txt", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var fi subjects.FileInfo
	if err := admin.callAs("r1", subjects.Rename, subjects.RenameRequest{From: "a.txt", To: "b.txt"}, &fi); err != nil {
		t.Fatal(err)
	}
	forget()
	if err := admin.callAs("r1", subjects.Rename, subjects.RenameRequest{From: "a.txt", To: "b.txt"}, &fi); err != nil || fi.Name != "b.txt" {
		t.Fatalf("retried rename: %v %+v", err, fi)
	}
	if err := admin.callAs("r2", subjects.Rename, subjects.RenameRequest{From: "a.txt", To: "b.txt"}, nil); subjects.CodeOf(err) != subjects.CodeNotFound {
		t.Fatalf("a new rename of a gone name: %v", err)
	}
	if err := admin.callAs("d1", subjects.Delete, subjects.NameRequest{Name: "b.txt"}, nil); err != nil {
		t.Fatal(err)
	}
	forget()
	if err := admin.callAs("d1", subjects.Delete, subjects.NameRequest{Name: "b.txt"}, nil); err != nil {
		t.Fatalf("retried delete: %v", err)
	}
	if err := admin.callAs("d2", subjects.Delete, subjects.NameRequest{Name: "b.txt"}, nil); subjects.CodeOf(err) != subjects.CodeNotFound {
		t.Fatalf("a new delete of a gone name: %v", err)
	}
}

// TestAStaleCopyOfACommitPublishesNothing: a client that got no answer in
// time sends its commit again, and both copies run. Whatever the copy that
// lags finds, it must not write the meta again once the client acted on
// the first copy's answer: CI's fault matrix once saw a deleted file come
// back, its chunks purged, from the second copy of its commit.
func TestAStaleCopyOfACommitPublishesNothing(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &call{ctx: ctx, user: AdminUser, admin: true}

	// stale opens and stores an upload of name and returns its record as a
	// copy of its commit claimed it, at its revision then.
	stale := func(name string) (uploadRecord, uint64, subjects.UploadCommitRequest) {
		t.Helper()
		data := make([]byte, 1000)
		rand.Read(data)
		var st subjects.UploadState
		if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: name, Size: int64(len(data)), Overwrite: true}, &st); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.sendChunk(st, 0, data); err != nil {
			t.Fatal(err)
		}
		rec, rev := storedUpload(ctx, t, s, st.Upload)
		rec.Chunks, rec.Bytes = 1, int64(len(data))
		return rec, rev, subjects.UploadCommitRequest{Upload: st.Upload, Size: int64(len(data)), Digest: digestBytes(data)}
	}
	unchanged := func(name string, want object) {
		t.Helper()
		o, err := s.getObject(ctx, name)
		if err != nil || o.seq != want.seq {
			t.Fatalf("%s: the stale copy wrote its meta (now %+v at %d, was at %d; %v)", name, o.info, o.seq, want.seq, err)
		}
	}

	// The copy that answered committed, and the client deleted the file;
	// the lagging copy's claim came before the answering one's.
	rec, rev, commit := stale("deleted.bin")
	if err := admin.call(subjects.UploadCommit, commit, nil); err != nil {
		t.Fatal(err)
	}
	if err := admin.call(subjects.Delete, subjects.NameRequest{Name: "deleted.bin"}, nil); err != nil {
		t.Fatal(err)
	}
	tomb, _ := s.getObject(ctx, "deleted.bin")
	if fi, err := s.publishUpload(c, rec, rev, commit.Digest); err != nil || fi.Size != commit.Size {
		t.Errorf("stale copy after a delete: %+v, %v; want the first copy's outcome", fi, err)
	}
	unchanged("deleted.bin", tomb)

	// The same, but the lagging copy's claim is the latest: the answering
	// copy could not mark the record committed. The tombstone still names
	// the version, published once.
	rev = rewriteUpload(ctx, t, s, rec)
	if _, err := s.publishUpload(c, rec, rev, commit.Digest); err != nil {
		t.Errorf("latest claim after a delete: %v", err)
	}
	unchanged("deleted.bin", tomb)

	// The client deleted the file and put another in its place: the
	// lagging copy, whose upload may overwrite, must leave it.
	rec, rev, commit = stale("replaced.bin")
	if err := admin.call(subjects.UploadCommit, commit, nil); err != nil {
		t.Fatal(err)
	}
	if err := admin.call(subjects.Delete, subjects.NameRequest{Name: "replaced.bin"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.put("replaced.bin", []byte("the new content")); err != nil {
		t.Fatal(err)
	}
	now, _ := s.getObject(ctx, "replaced.bin")
	if _, err := s.publishUpload(c, rec, rev, commit.Digest); err != nil {
		t.Errorf("stale copy after a new put: %v", err)
	}
	unchanged("replaced.bin", now)
}

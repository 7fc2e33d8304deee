package fileserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/ftfs/ftfs/subjects"
)

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

// TestAStaleRunOfAUserRequestWritesNothing: a server frozen in the middle
// of a request whose claim a retry took over meanwhile (and ran) must not
// write the change when it thaws; the client may have acted on the retry's
// answer (removed the user the request added).
func TestAStaleRunOfAUserRequestWritesNothing(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := s.requests.Create(ctx, "stale-run", []byte(`{"pending":true}`))
	if err != nil {
		t.Fatal(err)
	}
	// A retry on the other server takes the claim over, runs, answers.
	if _, err := s.requests.Update(ctx, "stale-run", []byte(`{"body":{}}`), rev); err != nil {
		t.Fatal(err)
	}

	// A stale run must not bring back a user removed since.
	add := &call{ctx: ctx, user: AdminUser, admin: true, claimKey: "stale-run", claim: rev,
		req: requestWith(subjects.UserAdd, `{"user":"stale-user","password":"stale-password-1"}`)}
	if _, err := s.userAdd(add); subjects.CodeOf(err) != subjects.CodeBusy {
		t.Fatalf("stale run's user add: %v, want busy", err)
	}
	if _, err := s.getUser(ctx, "stale-user"); subjects.CodeOf(err) != subjects.CodeNotFound {
		t.Fatalf("stale run added the user: %v", err)
	}
}

// TestAStaleRunOfAFileRequestWritesNothing: a copy of a put, delete or
// rename that runs again after the request was answered, and after the
// client acted on that answer, must not make its change a second time: a
// server frozen with the request thaws and runs it (the fault matrix once
// found a deleted file back this way).
func TestAStaleRunOfAFileRequestWritesNothing(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(f op, subject, id string, req micro.Request) error {
		t.Helper()
		r := req.(*stubRequest)
		r.subject = subjects.For(AdminUser, subject)
		r.headers[subjects.HeaderRequestID] = []string{id}
		_, err := f(&call{ctx: ctx, req: r, user: AdminUser, admin: true})
		return err
	}
	put := func(name, id string) error {
		data := []byte("content of " + name)
		h, _ := json.Marshal(subjects.PutRequest{Name: name, Size: int64(len(data)), Digest: digestBytes(data), Overwrite: true})
		return run(s.put, subjects.Put, id, &stubRequest{data: data, headers: micro.Headers{subjects.HeaderPut: {string(h)}}})
	}
	del := func(name, id string) error {
		return run(s.delete, subjects.Delete, id, &stubRequest{data: []byte(`{"name":"` + name + `"}`), headers: micro.Headers{}})
	}
	rename := func(from, to, id string) error {
		return run(s.rename, subjects.Rename, id, &stubRequest{data: []byte(`{"from":"` + from + `","to":"` + to + `"}`), headers: micro.Headers{}})
	}
	live := func(name string) bool {
		t.Helper()
		o, err := s.getObject(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return o.live()
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// A put, answered; the client deletes the file; the put runs again.
	must(put("put.txt", "put-1"))
	must(del("put.txt", "del-1"))
	if err := put("put.txt", "put-1"); err != nil {
		t.Fatalf("stale put: %v, want the first run's answer", err)
	}
	if live("put.txt") {
		t.Fatal("a stale run of a put brought back the file deleted since")
	}

	// A delete, answered; the client puts the file again; the delete runs
	// again.
	must(put("del.txt", "put-2"))
	must(del("del.txt", "del-2"))
	must(put("del.txt", "put-3"))
	if err := del("del.txt", "del-2"); err != nil {
		t.Fatalf("stale delete: %v, want the first run's answer", err)
	}
	if !live("del.txt") {
		t.Fatal("a stale run of a delete removed the file put since")
	}

	// A rename, answered; the client renames it back; the rename runs again.
	must(put("a.txt", "put-4"))
	must(rename("a.txt", "b.txt", "mv-1"))
	must(rename("b.txt", "a.txt", "mv-2"))
	_ = rename("a.txt", "b.txt", "mv-1")
	if !live("a.txt") || live("b.txt") {
		t.Fatalf("a stale run of a rename moved the file again: a.txt live %v, b.txt live %v", live("a.txt"), live("b.txt"))
	}
}

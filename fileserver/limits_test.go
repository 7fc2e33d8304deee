package fileserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// TestLimitsInProcess runs two servers with small limits in this process,
// so that the race detector sees the watches, the refusals and the purge
// of a refused upload.
func TestLimitsInProcess(t *testing.T) {
	url := startTestBroker(t)
	var servers []*Server
	for _, role := range []string{RolePrimary, RoleBackup} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		s, err := Start(ctx, Config{
			Servers: []string{url}, ServicePassword: testServicePassword, AdminPassword: "admin-password",
			Role: role, Logger: startTestLogger(),
			MaxFileSize: 1 << 20, UserQuota: 2 << 20, MaxOpenUploads: 2, MaxTransfers: 3,
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		servers = append(servers, s)
	}
	admin := dialUser(t, url, AdminUser, "admin-password")
	chunk, mib := make([]byte, subjects.ChunkSize), make([]byte, 1<<20)

	// Unknown size, refused at the chunk that passes the maximum, and
	// purged without the client asking.
	var st subjects.UploadState
	if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "big", Size: -1}, &st); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := admin.sendChunk(st, i, chunk); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if _, err := admin.sendChunk(st, 2, chunk); subjects.CodeOf(err) != subjects.CodeTooLarge {
		t.Fatalf("chunk past the maximum file size: %v", err)
	}
	s := servers[0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, gerr := s.store.ObjectStream().GetLastMsgForSubject(context.Background(), s.chunkSubject(st.Upload))
		_, kerr := s.uploads.Get(context.Background(), st.Upload)
		if gerr == jetstream.ErrMsgNotFound && kerr == jetstream.ErrKeyNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refused upload still there: chunks %v, record %v", gerr, kerr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The quota, whichever server answers.
	for _, name := range []string{"a", "b"} {
		if _, err := admin.put(name, mib); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.put("c", mib); subjects.CodeOf(err) != subjects.CodeQuota {
		t.Fatalf("put over the quota: %v", err)
	}
	if _, err := admin.put("a", mib); err != nil {
		t.Fatalf("overwrite within the quota: %v", err)
	}
	if err := admin.callAs("rm-b", subjects.Delete, subjects.NameRequest{Name: "b"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.put("c", mib); err != nil {
		t.Fatalf("put after a delete: %v", err)
	}
	if err := admin.callAs("rm-c", subjects.Delete, subjects.NameRequest{Name: "c"}, nil); err != nil {
		t.Fatal(err)
	}

	// Open uploads, counted on both servers.
	for _, name := range []string{"o1", "o2"} {
		if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: name, Size: 0}, &st); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "o3", Size: 0}, &st); subjects.CodeOf(err) != subjects.CodeQuota {
			t.Fatalf("a third open upload: %v", err)
		}
	}
}

// TestALongDirectUploadCountsAsATransfer: a direct upload writes no
// checkpoints while its client publishes the chunks, so its record soon
// looks idle; it still counts as a transfer for as long as chunks arrive.
func TestALongDirectUploadCountsAsATransfer(t *testing.T) {
	url := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Servers: []string{url}, ServicePassword: testServicePassword, AdminPassword: "admin-password",
		Role: RolePrimary, Logger: startTestLogger(), MaxTransfers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	admin := dialUser(t, url, AdminUser, "admin-password")
	var st subjects.UploadState
	if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "long.bin", Size: 2 * subjects.ChunkSize, Direct: true}, &st); err != nil {
		t.Fatal(err)
	}
	// Opened a minute ago, as far as its record tells.
	rec, _ := storedUpload(ctx, t, s, st.Upload)
	rec.Updated = time.Now().Add(-time.Minute)
	if err := s.usage.waitFor(ctx, 0, rewriteUpload(ctx, t, s, rec)); err != nil {
		t.Fatal(err)
	}
	if err := s.checkTransfers(ctx, AdminUser, downloadKey{}, false); err != nil {
		t.Fatalf("an upload whose client stored nothing for a minute counted: %v", err)
	}
	if _, err := s.store.JetStream().Publish(ctx, s.chunkSubject(st.Upload), make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := s.checkTransfers(ctx, AdminUser, downloadKey{}, false); subjects.CodeOf(err) != subjects.CodeQuota {
		t.Fatalf("an upload that stored a chunk just now: %v, want it counted", err)
	}
}

// TestAnOpenFarFromEveryLimitGoesAheadOnALaggingIndex checks what an
// upload's open does when the indexes cannot be brought up to date (their
// watch died with its broker): far from every limit it goes ahead within a
// second, near one it waits for them as long as any refusal would.
func TestAnOpenFarFromEveryLimitGoesAheadOnALaggingIndex(t *testing.T) {
	started := startTestServer(t, startTestBroker(t), RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := started.uploads.Create(ctx, "someone-elses", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// A server whose index nothing feeds: it lags the bucket for good.
	s := &Server{cfg: Config{MaxOpenUploads: 4}, usage: newUsage(), store: started.store, log: started.log}

	start := time.Now()
	if err := s.admitUpload(ctx, "alice", 0, 0); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= syncWait {
		t.Fatalf("an open far from every limit waited %v for the index", took)
	}

	for i := range 3 { // one short of the limit: near it
		s.usage.putUpload(0, fmt.Sprint("open", i), &uploadRecord{Owner: "alice"})
	}
	start = time.Now()
	if err := s.admitUpload(ctx, "alice", 0, 0); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < syncWait {
		t.Fatalf("an open near a limit went ahead after %v, without waiting for the index", took)
	}
}

// TestACommitCountsAFileStoredAMomentAgoElsewhere: the quota check of a
// commit (a small put's, an upload's) counts a file stored a moment ago
// through another server, which this server's index has not applied yet,
// even with room to spare on the index as it is.
func TestACommitCountsAFileStoredAMomentAgoElsewhere(t *testing.T) {
	url := startTestBroker(t)
	started := startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	if _, err := admin.put("elsewhere", make([]byte, 3000)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seq, err := started.lastFileChange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A server whose index applies that file 100 ms late.
	s := &Server{cfg: Config{UserQuota: 4096, Bucket: started.cfg.Bucket}, usage: newUsage(),
		nc: started.nc, store: started.store, log: started.log}
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.usage.putFile(seq, subjects.FileInfo{Name: "elsewhere", Owner: AdminUser, Size: 3000}, true)
	}()
	err = s.admitCommit(ctx, uploadRecord{ID: "new", Name: "new", Owner: AdminUser, Bytes: 2000}, object{})
	if subjects.CodeOf(err) != subjects.CodeQuota {
		t.Fatalf("2000 bytes more on 3000 stored, quota 4096: %v, want a quota refusal", err)
	}
}

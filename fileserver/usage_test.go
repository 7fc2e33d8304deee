package fileserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

func TestUsageCountsFilesByOwner(t *testing.T) {
	u := newUsage()
	u.putFile(1, subjects.FileInfo{Name: "a", Owner: "alice", Size: 100}, true)
	u.putFile(2, subjects.FileInfo{Name: "b", Owner: "alice", Size: 50}, true)
	u.putFile(3, subjects.FileInfo{Name: "c", Owner: "bob", Size: 7}, true)
	if got := u.used("alice", ""); got != 150 {
		t.Fatalf("alice uses %d, want 150", got)
	}
	// An overwrite replaces the old size; one by another user moves it.
	u.putFile(4, subjects.FileInfo{Name: "a", Owner: "alice", Size: 30}, true)
	u.putFile(5, subjects.FileInfo{Name: "b", Owner: "bob", Size: 60}, true)
	if got, bob := u.used("alice", ""), u.used("bob", ""); got != 30 || bob != 67 {
		t.Fatalf("after overwrites alice uses %d (want 30), bob %d (want 67)", got, bob)
	}
	if got := u.fileSize("a", "alice"); got != 30 {
		t.Fatalf("alice's a: %d", got)
	}
	if got := u.fileSize("b", "alice"); got != 0 {
		t.Fatalf("bob's b counted as alice's: %d", got)
	}
	// A tombstone (delete, or the old name of a rename) frees the bytes.
	u.putFile(6, subjects.FileInfo{Name: "a", Owner: "alice", Size: 0}, false)
	u.putFile(7, subjects.FileInfo{Name: "x", Owner: "", Size: 0}, false) // a name never seen
	if got := u.used("alice", ""); got != 0 {
		t.Fatalf("alice uses %d after deleting everything", got)
	}
	if len(u.stored) != 1 {
		t.Fatalf("owners left with nothing stay indexed: %v", u.stored)
	}
	u.putFile(8, subjects.FileInfo{Name: "", Owner: "", Size: 0}, false) // unreadable: only the sequence moves
	if u.filesSeq != 8 {
		t.Fatalf("files sequence %d, want 8", u.filesSeq)
	}
}

func TestUsageCountsUnfinishedUploads(t *testing.T) {
	u := newUsage()
	now := time.Now()
	u.putFile(1, subjects.FileInfo{Name: "f", Owner: "alice", Size: 1000}, true)
	u.putUpload(1, "u1", &uploadRecord{Owner: "alice", Size: 500, Updated: now})
	u.putUpload(2, "u2", &uploadRecord{Owner: "alice", Size: -1, Bytes: 300, Updated: now.Add(-time.Hour)})
	u.putUpload(3, "u3", &uploadRecord{Owner: "alice", Size: 10, Bytes: 40, Updated: now}) // sent more than it announced
	u.putUpload(4, "b1", &uploadRecord{Owner: "bob", Size: 9, Updated: now})
	if got := u.used("alice", ""); got != 1000+500+300+40 {
		t.Fatalf("alice uses %d", got)
	}
	if got := u.used("alice", "u1"); got != 1000+300+40 {
		t.Fatalf("alice uses %d but upload u1", got)
	}
	if got := u.openUploads("alice"); got != 3 {
		t.Fatalf("alice has %d open uploads, want 3", got)
	}
	// u2 has been idle for an hour: open, but no longer a transfer.
	if got := u.transfers("alice", now, downloadKey{}); got != 2 {
		t.Fatalf("alice runs %d transfers, want 2", got)
	}
	// A checkpoint moves the record on; commit and abort end it.
	u.putUpload(5, "u2", &uploadRecord{Owner: "alice", Size: -1, Bytes: 800, Updated: now})
	if got := u.transfers("alice", now, downloadKey{}); got != 3 {
		t.Fatalf("alice runs %d transfers after u2 went on, want 3", got)
	}
	u.putUpload(6, "u1", &uploadRecord{Owner: "alice", Size: 500, Bytes: 500, Committed: &subjects.FileInfo{}})
	u.putUpload(7, "u2", nil)
	if got := u.used("alice", ""); got != 1000+40 {
		t.Fatalf("alice uses %d after a commit and an abort", got)
	}
	if got := u.openUploads("alice"); got != 1 {
		t.Fatalf("alice has %d open uploads, want 1", got)
	}
	if got := u.openUploads("bob"); got != 1 {
		t.Fatalf("bob has %d open uploads, want 1", got)
	}
	u.putUpload(8, "u3", nil)
	if len(u.uploads) != 1 || len(u.uploadOwner) != 1 {
		t.Fatalf("finished uploads stay indexed: %v %v", u.uploads, u.uploadOwner)
	}
}

func TestUsageCountsDownloadsUntilTheyEnd(t *testing.T) {
	u := newUsage()
	now := time.Now()
	d1, d2, other := downloadKey{"alice", "i.1"}, downloadKey{"alice", "i.2"}, downloadKey{"bob", "i.3"}
	u.download(d1, now.Add(TransferIdle))
	u.download(d2, now.Add(TransferIdle))
	u.download(other, now.Add(TransferIdle))
	if got := u.transfers("alice", now, downloadKey{}); got != 2 {
		t.Fatalf("alice runs %d transfers, want 2", got)
	}
	if got := u.transfers("alice", now, d1); got != 1 {
		t.Fatalf("alice runs %d transfers but d1, want 1", got)
	}
	if !u.running(d1, now) || u.running(downloadKey{"alice", "i.9"}, now) {
		t.Fatal("running downloads misreported")
	}
	u.download(d1, time.Time{}) // its last batch
	if got := u.transfers("alice", now, downloadKey{}); got != 1 {
		t.Fatalf("alice runs %d transfers after one ended, want 1", got)
	}
	// A download that stopped asking stops counting, and is forgotten
	// when another starts.
	later := now.Add(TransferIdle + time.Second)
	if got := u.transfers("alice", later, downloadKey{}); got != 0 {
		t.Fatalf("alice runs %d transfers a while after the last batch", got)
	}
	u.mu.Lock()
	u.downloads[d2] = now.Add(-time.Second)
	u.mu.Unlock()
	u.download(downloadKey{"carol", "i.4"}, now.Add(TransferIdle))
	if _, ok := u.downloads[d2]; ok {
		t.Fatal("an expired download was kept")
	}
}

func TestUsageWaitsForStorage(t *testing.T) {
	u := newUsage()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- u.waitFor(ctx, 3, 2)
	}()
	u.putFile(3, subjects.FileInfo{Name: "a", Owner: "alice", Size: 1}, true)
	select {
	case err := <-done:
		t.Fatalf("waitFor returned before the uploads caught up: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	u.putUpload(2, "u", nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := u.waitFor(ctx, 4, 0); err == nil {
		t.Fatal("waitFor a sequence never applied returned no error")
	}
	u.resetFiles()
	if u.filesSeq != 0 || u.used("alice", "") != 0 {
		t.Fatal("reset kept the files")
	}
}

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

// TestExpiredUploadsReleaseTheirWriter checks that when one server drops an
// idle upload that the other holds, the holder stops its writer too.
func TestExpiredUploadsReleaseTheirWriter(t *testing.T) {
	url := startTestBroker(t)
	var servers []*Server
	for _, role := range []string{RolePrimary, RoleBackup} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		s, err := Start(ctx, Config{
			Servers: []string{url}, ServicePassword: testServicePassword, AdminPassword: "admin-password",
			Role: role, Logger: startTestLogger(), UploadIdle: time.Second,
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		servers = append(servers, s)
	}
	admin := dialUser(t, url, AdminUser, "admin-password")
	var st subjects.UploadState
	for range 4 { // each server, most likely, holds one
		if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "idle", Size: -1}, &st); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.sendChunk(st, 0, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	held := func() int {
		n := 0
		for _, s := range servers {
			n += s.holders.count()
		}
		return n
	}
	if n := held(); n != 4 {
		t.Fatalf("%d uploads held, want 4", n)
	}
	deadline := time.Now().Add(15 * time.Second)
	for held() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d writers of expired uploads still running", held())
		}
		time.Sleep(50 * time.Millisecond)
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

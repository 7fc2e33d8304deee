package fileserver

import (
	"context"
	"testing"
	"time"

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

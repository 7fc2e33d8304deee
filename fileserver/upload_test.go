package fileserver

import (
	"context"
	"crypto/rand"
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
				if _, err := s.store.JetStream().Publish(ctx, subj, make([]byte, 10)); err != nil {
					t.Fatal(err)
				}
				if _, err := s.uploads.Get(ctx, up); err != nil {
					t.Fatalf("an active direct upload was dropped: %v", err)
				}
			}
			_, gerr := s.store.ObjectStream().GetLastMsgForSubject(ctx, subj)
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

func TestResumeOnAnotherServerAfterHolderStops(t *testing.T) {
	url := startTestBroker(t)
	first := startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")

	data := make([]byte, 40*subjects.ChunkSize+5)
	rand.Read(data)
	var st subjects.UploadState
	if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "big.bin", Size: int64(len(data))}, &st); err != nil {
		t.Fatal(err)
	}
	send := func(st subjects.UploadState, from, to int) {
		for i := from; i < to; i++ {
			if _, err := admin.sendChunk(st, i, data[i*st.ChunkSize:min((i+1)*st.ChunkSize, len(data))]); err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
		}
	}
	send(st, 0, 20) // one checkpoint at 16, four chunks after it
	second := startTestServer(t, url, RoleBackup)
	first.Stop()

	var st2 subjects.UploadState
	if err := admin.call(subjects.UploadResume, subjects.UploadRequest{Upload: st.Upload}, &st2); err != nil {
		t.Fatal(err)
	}
	if st2.Instance != second.Instance() || st2.NextChunk != 20 || st2.Offset != int64(20*st.ChunkSize) {
		t.Fatalf("resume state %+v", st2)
	}
	send(st2, 20, 41)
	var fi subjects.FileInfo
	if err := admin.call(subjects.UploadCommit, subjects.UploadCommitRequest{Upload: st.Upload, Size: int64(len(data)), Digest: digestBytes(data)}, &fi); err != nil {
		t.Fatal(err)
	}
	if fi.Size != int64(len(data)) || fi.Chunks != 41 {
		t.Fatalf("file info %+v", fi)
	}
}

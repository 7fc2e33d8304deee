package fileserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// TestWalkKeepsChunksInOrder stores chunks as a failed store followed by
// successful ones leaves them (out of order, twice), with a foreign
// message between; the walk counts each chunk once, in order, and deletes
// the rest, so the subject reads as the file.
func TestWalkKeepsChunksInOrder(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := "WALKTEST"
	chunks := make([][]byte, 4)
	for i := range chunks {
		chunks[i] = make([]byte, 1000+i)
		rand.Read(chunks[i])
	}
	for _, i := range []int{0, 1, 3, 2, 2, 3} {
		m := nats.NewMsg(s.chunkSubject(id))
		m.Data = chunks[i]
		m.Header.Set(subjects.HeaderChunk, strconv.Itoa(i))
		if _, err := s.store.JetStream().PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		if _, err := s.store.JetStream().Publish(ctx, s.chunkSubject("OTHER"), []byte("another upload's chunk")); err != nil {
			t.Fatal(err)
		}
	}
	rec := uploadRecord{ID: id}
	h := sha256.New()
	if err := s.walk(ctx, &rec, h); err != nil {
		t.Fatal(err)
	}
	want := bytes.Join(chunks, nil)
	if sum := sha256.Sum256(want); rec.Chunks != 4 || rec.Bytes != int64(len(want)) || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("walk: %d chunks, %d bytes, digest equal %v", rec.Chunks, rec.Bytes, bytes.Equal(h.Sum(nil), sum[:]))
	}
	var got []byte
	var order []string
	for seq := uint64(1); ; {
		m, err := s.leaderGet(ctx, store.MsgRequest{Seq: seq, NextFor: s.chunkSubject(id)})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Data...)
		order = append(order, m.Header.Get(subjects.HeaderChunk))
		seq = m.Sequence + 1
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the subject after the walk holds chunks %v", order)
	}
	if rec.LastSeq == 0 {
		t.Fatal("walk did not move LastSeq")
	}
}

// TestFencesKeepADeposedHolderOut: once a server has taken an upload over
// (moved its fences), the holder before stores no chunk and cannot move
// the fences back; the new holder recognises its own move whose answer it
// lost.
func TestFencesKeepADeposedHolderOut(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := "FENCETEST"
	storeChunk := func(fences []uint64, index int) error {
		m := nats.NewMsg(s.chunkSubject(id))
		m.Data = []byte("chunk")
		f := index % fenceCount
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(fences[f], 10))
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, s.fenceSubject(id, f))
		_, err := s.store.JetStream().PublishMsg(ctx, m)
		return err
	}
	first := make([]uint64, fenceCount) // never moved: every check is for 0
	for i := range fenceCount {
		if err := storeChunk(first, i); err != nil {
			t.Fatalf("first holder, chunk %d: %v", i, err)
		}
	}
	second := make([]uint64, fenceCount)
	if err := s.fence(ctx, id, second, true, "second"); err != nil {
		t.Fatalf("take over: %v", err)
	}
	for i := range fenceCount {
		if err := storeChunk(first, i); !store.WrongLastSequence(err) {
			t.Fatalf("deposed holder, chunk %d: %v, want a wrong last sequence", i, err)
		}
	}
	if err := s.fence(ctx, id, first, false, "first"); !errors.Is(err, errDeposed) {
		t.Fatalf("deposed holder moving its fences: %v", err)
	}
	if err := storeChunk(second, 0); err != nil {
		t.Fatalf("new holder: %v", err)
	}
	lost := append([]uint64(nil), second...)
	if err := s.fence(ctx, id, second, false, "second"); err != nil {
		t.Fatalf("new holder repairing: %v", err)
	}
	if err := s.fence(ctx, id, lost, false, "second"); err != nil || !slices.Equal(lost, second) {
		t.Fatalf("a move whose answer was lost, tried again: %v, %v vs %v", err, lost, second)
	}
}

// TestWriterRepairsAfterFailedStores makes storage refuse the full chunks
// of an upload for a while (the stream's maximum message size lowered)
// while its short last chunk, in flight behind them, gets stored out of
// order; once storage takes them again the writer has deleted the stray
// chunk and stored them all in order.
func TestWriterRepairsAfterFailedStores(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data := make([]byte, 4*subjects.ChunkSize+100)
	rand.Read(data)
	var st subjects.UploadState
	if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "repaired.bin", Size: int64(len(data))}, &st); err != nil {
		t.Fatal(err)
	}
	// A message first, so that the chunks deleted come after it and count
	// as deleted (the stream's first messages deleted would only move its
	// first sequence on).
	if _, err := s.store.JetStream().Publish(ctx, s.chunkSubject("MARKER"), []byte("m")); err != nil {
		t.Fatal(err)
	}
	cfg := s.store.ObjectStream().CachedInfo().Config
	small := cfg
	small.MaxMsgSize = 64 << 10
	if _, err := s.store.JetStream().UpdateStream(ctx, small); err != nil {
		t.Fatal(err)
	}
	restored := make(chan error, 1)
	time.AfterFunc(1500*time.Millisecond, func() {
		_, err := s.store.JetStream().UpdateStream(context.Background(), cfg)
		restored <- err
	})

	// Every chunk in flight at once, as a client's window sends them.
	inbox := admin.nc.NewInbox()
	answers, err := admin.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		t.Fatal(err)
	}
	n := (len(data) + st.ChunkSize - 1) / st.ChunkSize
	for i := range n {
		m := nats.NewMsg(subjects.For(admin.user, subjects.Chunk(st.Instance)))
		m.Reply = inbox + "." + strconv.Itoa(i)
		m.Header.Set(subjects.HeaderUpload, st.Upload)
		m.Header.Set(subjects.HeaderChunk, strconv.Itoa(i))
		m.Data = data[i*st.ChunkSize : min((i+1)*st.ChunkSize, len(data))]
		if err := admin.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	for acked := 0; acked < n; {
		m, err := answers.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("%d of %d chunks answered: %v", acked, n, err)
		}
		if m.Header.Get(subjects.HeaderStatus) == "100" {
			continue
		}
		var ack subjects.ChunkAck
		if err := decodeReply(m, &ack); err != nil {
			t.Fatalf("chunk %s: %v", m.Subject, err)
		}
		acked++
	}
	if err := <-restored; err != nil {
		t.Fatal(err)
	}
	var fi subjects.FileInfo
	if err := admin.call(subjects.UploadCommit, subjects.UploadCommitRequest{Upload: st.Upload, Size: int64(len(data)), Digest: digestBytes(data)}, &fi); err != nil {
		t.Fatalf("commit: %v", err)
	}
	info, err := s.store.ObjectStream().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.NumDeleted == 0 {
		t.Fatal("no chunk was deleted: the short last chunk was not stored out of order, and the repair went untested")
	}
	got, err := s.store.Objects().GetBytes(ctx, "repaired.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object store read after the repair: %v, equal=%v", err, bytes.Equal(got, data))
	}
}

// requestWith is a request with body data as a handler sees it, for
// handlers called directly.
func requestWith(subject, data string) micro.Request {
	return &stubRequest{subject: subject, data: []byte(data)}
}

type stubRequest struct {
	micro.Request // not called by the handlers tested
	subject       string
	data          []byte
	headers       micro.Headers
}

func (r *stubRequest) Data() []byte           { return r.data }
func (r *stubRequest) Subject() string        { return r.subject }
func (r *stubRequest) Headers() micro.Headers { return r.headers }

// TestARefusedPutLeavesNoContent: a put's content is stored while its
// session is checked (putEarly); a put refused then (a session that is
// not valid, a digest that does not match) leaves no chunk behind, and
// one that goes through leaves exactly its own.
func TestARefusedPutLeavesNoContent(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(token, name string, data []byte, digest string) error {
		h, _ := json.Marshal(subjects.PutRequest{Name: name, Size: int64(len(data)), Digest: digest, Overwrite: true})
		m := nats.NewMsg(subjects.Put)
		m.Data = data
		m.Header.Set(subjects.HeaderPut, string(h))
		m.Header.Set(subjects.HeaderSession, token)
		resp, err := admin.request(m)
		if err != nil {
			return err
		}
		return decodeReply(resp, nil)
	}
	chunks := func() int {
		n, err := s.store.LeaderSubjects(ctx, s.filesStream(), subjects.ObjectChunks(s.cfg.Bucket, "*"))
		if err != nil {
			t.Fatal(err)
		}
		return len(n)
	}
	data := []byte("refused content")
	if err := put("not-a-session-token", "refused.txt", data, digestBytes(data)); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("put with a bad session: %v, want unauthorized", err)
	}
	if err := put(admin.token, "refused.txt", data, digestBytes([]byte("other"))); subjects.CodeOf(err) != subjects.CodeIntegrity {
		t.Fatalf("put with a wrong digest: %v, want an integrity error", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for chunks() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("refused puts left %d chunks in storage", chunks())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := put(admin.token, "kept.txt", data, digestBytes(data)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // any purge of it would have run
	if n := chunks(); n != 1 {
		t.Fatalf("a put that went through left %d chunks, want its one", n)
	}
	got, err := s.store.Objects().GetBytes(ctx, "kept.txt")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("kept.txt reads back %q, %v", got, err)
	}
}

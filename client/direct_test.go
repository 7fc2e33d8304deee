package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/fileserver"
	"github.com/ftfs/ftfs/subjects"
)

// ask sends one request of c's session by hand and decodes its reply; a
// wire error comes back as its code.
func ask(t *testing.T, c *client.Client, subject string, body, reply any) subjects.Code {
	t.Helper()
	m := nats.NewMsg(subjects.For(c.User(), subject))
	m.Header.Set(subjects.HeaderSession, c.Token())
	m.Data, _ = json.Marshal(body)
	resp, err := c.Conn().RequestMsg(m, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if code := resp.Header.Get(subjects.HeaderErrorCode); code != "" {
		return subjects.Code(code)
	}
	if reply != nil {
		if err := json.Unmarshal(resp.Data, reply); err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
	}
	return ""
}

// uploadConn connects with a direct upload's token; violations of its
// permissions arrive on the returned channel.
func uploadConn(sys *system, token string) (*nats.Conn, <-chan error, error) {
	errs := make(chan error, 16)
	id, _, _ := subjects.ParseUploadToken(token)
	nc, err := nats.Connect(sys.url, nats.Token(token), nats.CustomInboxPrefix(subjects.UploadInbox(fileserver.AdminUser, id)),
		nats.Timeout(10*time.Second), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	return nc, errs, err
}

// TestUploadConnectionMayPublishOnlyItsChunks checks what a direct upload's
// token lets a connection do: publish chunks into that upload's subject,
// and nothing else; a wrong secret, and the token of an upload that is
// over, are refused.
func TestUploadConnectionMayPublishOnlyItsChunks(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	c := sys.login(t, fileserver.AdminUser, adminPassword)
	var st subjects.UploadState
	if code := ask(t, c, subjects.UploadOpen, subjects.UploadOpenRequest{Name: "d.bin", Size: 10, Direct: true}, &st); code != "" || st.Direct == nil {
		t.Fatalf("open: %s %+v", code, st)
	}
	if code := ask(t, c, subjects.UploadOpen, subjects.UploadOpenRequest{Name: "e.bin", Size: -1, Direct: true}, nil); code != subjects.CodeInvalid {
		t.Fatalf("direct upload of unknown size: %q, want %s", code, subjects.CodeInvalid)
	}

	nc, errs, err := uploadConn(sys, st.Direct.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, st.Direct.Subject, []byte("0123456789")); err != nil {
		t.Fatalf("publish a chunk: %v", err)
	}
	for _, subj := range []string{subjects.UploadChunks("SOMEONEELSE"), subjects.ObjectChunks(subjects.FilesBucket, st.Upload), subjects.ObjectMetas(subjects.FilesBucket),
		subjects.For(fileserver.AdminUser, subjects.Login), "$JS.API.STREAM.PURGE.OBJ_" + subjects.FilesBucket, subjects.DownloadImport} {
		if err := nc.Publish(subj, []byte("x")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Fatalf("publish to %s: %v", subj, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("publish to %s was not refused", subj)
		}
	}

	id, _, _ := subjects.ParseUploadToken(st.Direct.Token)
	if nc, _, err := uploadConn(sys, subjects.UploadToken(id, "0123456789abcdef")); err == nil {
		nc.Close()
		t.Fatal("an upload connection with a wrong secret was accepted")
	}
	if code := ask(t, c, subjects.UploadAbort, subjects.UploadRequest{Upload: st.Upload}, nil); code != "" {
		t.Fatalf("abort: %s", code)
	}
	if nc, _, err := uploadConn(sys, st.Direct.Token); err == nil {
		nc.Close()
		t.Fatal("the token of an aborted upload was accepted")
	}
}

// TestDirectCommitOfAChunkStoredTwiceResumesIntoOrder: a client that
// counted two chunks while storage holds three (the second twice) is sent
// to resume, which deletes the copy; the file then commits whole.
func TestDirectCommitOfAChunkStoredTwiceResumesIntoOrder(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	c := sys.login(t, fileserver.AdminUser, adminPassword)
	data := randomBytes(subjects.ChunkSize + 100)
	var st subjects.UploadState
	if code := ask(t, c, subjects.UploadOpen, subjects.UploadOpenRequest{Name: "twice.bin", Size: int64(len(data)), Direct: true}, &st); code != "" {
		t.Fatalf("open: %s", code)
	}
	nc, _, err := uploadConn(sys, st.Direct.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, part := range [][]byte{data[:subjects.ChunkSize], data[subjects.ChunkSize:], data[subjects.ChunkSize:]} {
		m := nats.NewMsg(st.Direct.Subject)
		m.Data = part
		m.Header.Set(subjects.HeaderChunk, strconv.Itoa(min(i, 1)))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	commit := subjects.UploadCommitRequest{Upload: st.Upload, Size: int64(len(data)), Digest: digest(data), Chunks: 2}
	if code := ask(t, c, subjects.UploadCommit, commit, nil); code != subjects.CodeConflict {
		t.Fatalf("commit over a chunk stored twice: %q, want %s", code, subjects.CodeConflict)
	}
	var resumed subjects.UploadState
	if code := ask(t, c, subjects.UploadResume, subjects.UploadRequest{Upload: st.Upload}, &resumed); code != "" || resumed.NextChunk != 2 || resumed.Direct == nil {
		t.Fatalf("resume: %s %+v", code, resumed)
	}
	var fi client.FileInfo
	if code := ask(t, c, subjects.UploadCommit, commit, &fi); code != "" || fi.Size != int64(len(data)) {
		t.Fatalf("commit after the resume: %s %+v", code, fi)
	}
	var got bytes.Buffer
	if _, err := c.Get(ctx, "twice.bin", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("get: %v, equal %v", err, bytes.Equal(got.Bytes(), data))
	}
}

// TestDirectUploadNeedsNoServerForItsChunks stops the file server that
// opened a 64 MiB upload as its first chunks are stored: the chunks go on
// into storage without a failover or a byte sent twice, and the commit
// reaches the other server.
func TestDirectUploadNeedsNoServerForItsChunks(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary, fileserver.RoleBackup)
	c := sys.login(t, fileserver.AdminUser, adminPassword)
	data := randomBytes(64 << 20)
	stopped := false
	var last client.Progress
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.Put(ctx, "direct.bin", bytes.NewReader(data), int64(len(data)), client.OnProgress(func(p client.Progress) {
		last = p
		if !stopped && p.Done > 0 && p.Done < p.Total {
			for _, s := range sys.servers {
				if s.Instance() == p.Instance {
					stopped = true
					s.Stop()
				}
			}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !stopped || last.Failovers != 0 || last.Resent != 0 {
		t.Fatalf("stopped %v, progress %+v: want no failover and nothing re-sent", stopped, last)
	}
	var got bytes.Buffer
	if _, err := c.Get(ctx, "direct.bin", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("get: %v, equal %v", err, bytes.Equal(got.Bytes(), data))
	}
	// The reader must give exactly the size announced.
	if _, err := c.Put(ctx, "long.bin", bytes.NewReader(data[:3*subjects.ChunkSize]), 2*subjects.ChunkSize+1); !errors.Is(err, client.ErrIntegrity) {
		t.Fatalf("a reader longer than announced: %v, want ErrIntegrity", err)
	}
	if _, err := c.Stat(ctx, "long.bin"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("stat after a refused put: %v, want ErrNotFound", err)
	}
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return subjects.Digest(sum[:])
}

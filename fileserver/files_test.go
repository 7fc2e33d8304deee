package fileserver

import (
	"bytes"
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

func TestUploadListDownloadThroughObjectStore(t *testing.T) {
	url := startTestBroker(t)
	startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")

	data := make([]byte, 3*subjects.ChunkSize+17)
	rand.Read(data)
	fi, err := admin.put("dir/a.bin", data)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size != int64(len(data)) || fi.Digest != digestBytes(data) || fi.Owner != AdminUser {
		t.Fatalf("file info %+v", fi)
	}

	// The stored object is an ordinary object store object.
	snc, err := nats.Connect(url, nats.UserInfo(subjects.ServiceUser, testServicePassword), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer snc.Close()
	js, _ := jetstream.New(snc)
	obs, err := js.ObjectStore(context.Background(), subjects.FilesBucket)
	if err != nil {
		t.Fatal(err)
	}
	got, err := obs.GetBytes(context.Background(), "dir/a.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object store get: %v, equal=%v", err, bytes.Equal(got, data))
	}

	var list subjects.ListReply
	if err := admin.call(subjects.List, subjects.ListRequest{Prefix: "dir/"}, &list); err != nil || len(list.Files) != 1 {
		t.Fatalf("list: %v %+v", err, list)
	}

	// Download in batches straight from JetStream.
	sub, err := admin.nc.SubscribeSync(admin.nc.NewRespInbox())
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	var after uint64
	for len(out) < len(data) {
		m := nats.NewMsg(subjects.For(admin.user, subjects.Download))
		m.Header.Set(subjects.HeaderSession, admin.token)
		m.Reply = sub.Subject
		m.Data, _ = json.Marshal(subjects.DownloadRequest{Name: "dir/a.bin", Version: fi.Version, After: after, Max: 2})
		if err := admin.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		for {
			r, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if c := r.Header.Get(subjects.HeaderErrorCode); c != "" {
				t.Fatalf("download error %s %s", c, r.Header.Get(subjects.HeaderErrorText))
			}
			if r.Header.Get(subjects.HeaderStatus) != "" {
				break
			}
			out = append(out, r.Data...)
			after, _ = strconv.ParseUint(r.Header.Get(subjects.HeaderStreamSeq), 10, 64)
		}
	}
	if !bytes.Equal(out, data) {
		t.Fatal("downloaded bytes differ")
	}

	// Bad digest: refused, nothing visible.
	var st subjects.UploadState
	if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "bad.bin", Size: 3}, &st); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subjects.For(admin.user, subjects.Chunk(st.Instance)))
	m.Header.Set(subjects.HeaderUpload, st.Upload)
	m.Header.Set(subjects.HeaderChunk, "0")
	m.Data = []byte("abc")
	if _, err := admin.nc.RequestMsg(m, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	err = admin.call(subjects.UploadCommit, subjects.UploadCommitRequest{Upload: st.Upload, Size: 3, Digest: "SHA-256=wrong"}, nil)
	if subjects.CodeOf(err) != subjects.CodeIntegrity {
		t.Fatalf("commit with bad digest: %v", err)
	}
	if err := admin.call(subjects.Stat, subjects.NameRequest{Name: "bad.bin"}, nil); subjects.CodeOf(err) != subjects.CodeNotFound {
		t.Fatalf("stat after failed commit: %v", err)
	}
}

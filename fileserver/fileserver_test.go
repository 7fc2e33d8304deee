package fileserver

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/broker"
	"github.com/ftfs/ftfs/subjects"
)

const testServicePassword = "test-service-password"

// testSystemPassword enables the operator identity (subjects.OperatorUser).
const testSystemPassword = "test-system-password"

func startTestBroker(t testing.TB) string {
	t.Helper()
	b, err := broker.Start(broker.Config{
		Port: -1, HTTPPort: -1, DataDir: t.TempDir(), ServicePassword: testServicePassword,
		SystemPassword: testSystemPassword, Logger: startTestLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return b.ClientURL()
}

func startTestLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startTestServer(t testing.TB, url, role string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{
		Servers: []string{url}, ServicePassword: testServicePassword, AdminPassword: "admin-password",
		Role: role, Logger: startTestLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// rawUser is a user connection speaking the wire protocol by hand.
type rawUser struct {
	t     testing.TB
	nc    *nats.Conn
	user  string
	token string
}

func dialUser(t testing.TB, url, user, password string) *rawUser {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.CustomInboxPrefix(subjects.Inbox(user)), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	u := &rawUser{t: t, nc: nc, user: user}
	var sess subjects.SessionInfo
	if err := u.call(subjects.Login, subjects.LoginRequest{User: user, Password: password}, &sess); err != nil {
		t.Fatalf("login: %v", err)
	}
	u.token = sess.Token
	return u
}

func (u *rawUser) call(subject string, req, reply any) error {
	u.t.Helper()
	return u.callAs("", subject, req, reply)
}

// callAs sends a request, with a request ID as the client does for
// mutating requests when id is set. Like the client library, it retries a
// request a server swallowed.
func (u *rawUser) callAs(id, subject string, req, reply any) error {
	u.t.Helper()
	m := nats.NewMsg(subject)
	m.Data, _ = json.Marshal(req)
	if u.token != "" {
		m.Header.Set(subjects.HeaderSession, u.token)
	}
	if id != "" {
		m.Header.Set(subjects.HeaderRequestID, id)
	}
	var resp *nats.Msg
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if resp, err = u.request(m); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	return decodeReply(resp, reply)
}

// request sends m and returns its answer, skipping the keepalives a
// server sends while it works (status 100).
func (u *rawUser) request(m *nats.Msg) (*nats.Msg, error) {
	m.Subject = subjects.For(u.user, m.Subject)
	m.Reply = u.nc.NewInbox()
	sub, err := u.nc.SubscribeSync(m.Reply)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := u.nc.PublishMsg(m); err != nil {
		return nil, err
	}
	for {
		resp, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			return nil, err
		}
		switch resp.Header.Get(subjects.HeaderStatus) {
		case "100":
			continue
		case "503":
			return nil, nats.ErrNoResponders
		}
		return resp, nil
	}
}

// decodeReply turns a reply into reply, or a micro error into an error.
func decodeReply(resp *nats.Msg, reply any) error {
	if code := resp.Header.Get(subjects.HeaderErrorCode); code != "" {
		return &subjects.Error{Code: subjects.Code(code), Message: resp.Header.Get(subjects.HeaderErrorText)}
	}
	if reply != nil {
		return json.Unmarshal(resp.Data, reply)
	}
	return nil
}

// put uploads data with one chunk in flight at a time.
func (u *rawUser) put(name string, data []byte) (subjects.FileInfo, error) {
	var st subjects.UploadState
	if err := u.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: name, Size: int64(len(data)), Overwrite: true}, &st); err != nil {
		return subjects.FileInfo{}, err
	}
	for i := 0; i*st.ChunkSize < len(data); i++ {
		if _, err := u.sendChunk(st, i, data[i*st.ChunkSize:min((i+1)*st.ChunkSize, len(data))]); err != nil {
			return subjects.FileInfo{}, fmt.Errorf("chunk %d: %w", i, err)
		}
	}
	var fi subjects.FileInfo
	err := u.call(subjects.UploadCommit, subjects.UploadCommitRequest{Upload: st.Upload, Size: int64(len(data)), Digest: digestBytes(data)}, &fi)
	return fi, err
}

// digestBytes is data's digest as uploads carry it (digestOf).
func digestBytes(data []byte) string {
	h := sha256.New()
	h.Write(data)
	return digestOf(h)
}

// storedUpload reads upload id's record and its revision.
func storedUpload(ctx context.Context, t testing.TB, s *Server, id string) (uploadRecord, uint64) {
	t.Helper()
	e, err := s.uploads.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var rec uploadRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	return rec, e.Revision()
}

// rewriteUpload stores rec over its upload's record, whatever that holds
// now, and returns the new revision.
func rewriteUpload(ctx context.Context, t testing.TB, s *Server, rec uploadRecord) uint64 {
	t.Helper()
	_, cur := storedUpload(ctx, t, s, rec.ID)
	b, _ := json.Marshal(rec)
	rev, err := s.uploads.Update(ctx, rec.ID, b, cur)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

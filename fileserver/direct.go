package fileserver

// Direct uploads. Relayed through a server, every byte of an upload crosses
// the broker twice and is hashed twice, which on a small machine halves the
// throughput of a put against the object store's own. A direct upload
// keeps the server out of the data path but not out of control: the server
// that opens it checks the name, the size and the quota as for any upload,
// records it, and hands the client a secret. With it the client connects a
// second time, and the auth callout gives that connection one permission:
// publish to this upload's chunk subject (subjects.UploadPublish), with
// payloads of one chunk at most. The client publishes the chunks itself,
// behind the upload's fences (writer.go), and checks JetStream's acks for
// order. On any failure it asks a server to resume, which fences and walks
// the chunk subject exactly as for a relayed upload's takeover. Commit
// counts the messages on the chunk subject against the client's count.
//
// What the server no longer checks is the digest: it sees the bytes only
// when a resume walks them. A client that lies about it damages only its
// own file, whose reads then fail their digest check, as a file put with
// the object store's own client would.

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// uploadConnTTL bounds how long the broker keeps an upload connection
// authorized at a time; the client's reconnect asks the auth callout again,
// which refuses it once the upload is committed, aborted or gone.
const uploadConnTTL = time.Hour

// newSecret is a fresh random secret (128 bits, hex).
func newSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand never fails
	return hex.EncodeToString(b)
}

// directState tells the client of a direct upload where to go on: with
// the fences at seqs, and (when opening) the upload connection's token.
func (s *Server) directState(rec uploadRecord, seqs []uint64, secret string) subjects.UploadState {
	st := s.uploadState(rec)
	d := &subjects.DirectUpload{Subject: subjects.UploadChunks(rec.ID)}
	if secret != "" {
		d.Token = subjects.UploadToken(rec.ID, secret)
	}
	for i, seq := range seqs {
		d.Fences = append(d.Fences, subjects.Fence{Subject: s.fenceSubject(rec.ID, i), Seq: seq})
	}
	st.Direct = d
	return st
}

// chunksFor is how many chunks a file of size bytes has.
func chunksFor(size int64) uint32 {
	return uint32((size + subjects.ChunkSize - 1) / subjects.ChunkSize)
}

// commitDirect commits a direct upload: the chunk subject must hold exactly
// the chunks the client counted stored in order. A different count (a
// chunk stored twice or lost after all) sends the client to resume, which
// walks the subject into order.
func (s *Server) commitDirect(c *call, r subjects.UploadCommitRequest, rec uploadRecord, rev uint64) (any, error) {
	if rec.Committed != nil {
		return *rec.Committed, nil // a retried commit
	}
	switch {
	case rec.Size >= 0 && rec.Size != r.Size:
		s.abortUpload(c.ctx, rec.ID)
		return nil, subjects.Errorf(subjects.CodeIntegrity, "upload of %q: announced %d bytes, got %d; nothing was stored", rec.Name, rec.Size, r.Size)
	case r.Chunks != chunksFor(r.Size):
		s.abortUpload(c.ctx, rec.ID)
		return nil, subjects.Errorf(subjects.CodeIntegrity, "upload of %q: %d bytes are %d chunks, the client counted %d; nothing was stored", rec.Name, r.Size, chunksFor(r.Size), r.Chunks)
	case r.Chunks < rec.Chunks:
		s.abortUpload(c.ctx, rec.ID)
		return nil, subjects.Errorf(subjects.CodeIntegrity, "upload of %q: a resume found %d chunks stored, the client counted %d; nothing was stored", rec.Name, rec.Chunks, r.Chunks)
	}
	n, err := s.storedChunks(c.ctx, rec.ID)
	if err != nil {
		return nil, wrapStorage("count stored chunks", err)
	}
	if n != uint64(r.Chunks) {
		s.log.Warn("direct upload's chunks miscounted; the client resumes", "upload", rec.ID, "stored", n, "counted", r.Chunks)
		return nil, subjects.Rejectf(subjects.CodeConflict, subjects.ReasonResume, "upload %s: storage holds %d chunks, the client counted %d: resume it", rec.ID, n, r.Chunks)
	}
	// Claim the record before the meta, as a relayed takeover does: a copy
	// of this commit that loaded the record before another copy committed
	// it must not write the meta again, perhaps after the file's delete
	// (FAULTS.md, a deleted file back).
	rec.Chunks, rec.Bytes = r.Chunks, r.Size
	rec.Instance, rec.Updated = s.instance, time.Now().UTC()
	b, _ := json.Marshal(rec)
	newRev, err := s.store.KVUpdate(c.ctx, s.uploads, rec.ID, b, rev)
	if err != nil {
		return s.claimLost(c, rec.ID, "claim upload", err)
	}
	fi, err := s.publishUpload(c, rec, newRev, r.Digest)
	if err == nil {
		// The client has had every chunk acknowledged: anything its
		// connection publishes now would land after the commit.
		s.endUpload(rec.ID)
		s.countReceived("direct", r.Size)
	}
	return fi, err
}

// storedChunks counts the messages on an upload's chunk subject, as the
// stream leader has them.
func (s *Server) storedChunks(ctx context.Context, id string) (uint64, error) {
	subj := s.chunkSubject(id)
	counts, err := s.store.LeaderSubjects(ctx, s.filesStream(), subj)
	return counts[subj], err
}

// grant is what the auth callout lets a connection do.
type grant struct {
	user    string // the connection's user name (subjects.UploadConnUser for an upload's)
	account string // where the connection is placed
	expires time.Time
	pub     []string
	sub     []string
	payload int64 // largest message; 0: the broker's limit
}

// authorizeUpload checks an upload connection's token: an open direct
// upload whose secret it carries, of a user who still exists.
func (s *Server) authorizeUpload(ctx context.Context, id, secret string) (grant, error) {
	rec, _, err := s.readUpload(ctx, id)
	if subjects.CodeOf(err) == subjects.CodeNotFound {
		return grant{}, errors.New("upload finished, aborted or unknown")
	}
	if err != nil {
		return grant{}, err
	}
	if !rec.Direct || subtle.ConstantTimeCompare([]byte(sessionKey(secret)), []byte(rec.TokenHash)) != 1 {
		return grant{}, errors.New("not the token of this upload")
	}
	if rec.Committed != nil {
		return grant{}, errors.New("upload committed already")
	}
	if _, err := s.getUser(ctx, rec.Owner); err != nil {
		return grant{}, errors.New("user no longer exists")
	}
	return grant{
		user:    subjects.UploadConnUser(rec.Owner, id, subjects.UploadConnLimit(rec.Size)),
		account: subjects.UploadsAccount,
		expires: time.Now().Add(uploadConnTTL),
		pub:     subjects.UploadPublish(id),
		sub:     subjects.UploadSubscribe(cmp.Or(rec.Via, rec.Owner), id),
		// A chunk and its headers (index, fence).
		payload: subjects.ChunkSize + 4096,
	}, nil
}

// directAbandoned says whether the janitor drops an open direct upload:
// its client has stored no chunk for UploadIdle (it writes no
// checkpoints, so its record's age alone does not tell), or its chunk
// subject holds more chunks than its size can take (a client publishing
// past its upload).
func (s *Server) directAbandoned(ctx context.Context, rec uploadRecord, age time.Duration) bool {
	if n, err := s.storedChunks(ctx, rec.ID); err == nil && n > uint64(chunksFor(rec.Size))+fenceCount {
		s.log.Warn("direct upload holds more chunks than its size; dropped", "upload", rec.ID, "name", rec.Name, "user", rec.Owner, "chunks", n)
		return true
	}
	if age <= s.cfg.UploadIdle {
		return false
	}
	m, err := s.leaderGet(ctx, store.MsgRequest{LastFor: s.chunkSubject(rec.ID)})
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return true
	case err != nil:
		return false // when in doubt, keep it
	}
	return time.Since(m.Time) > s.cfg.UploadIdle
}

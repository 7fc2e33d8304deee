package primary

// The catalog: listings and the purge of a replaced version are answered
// from the files index (usage.files, fed by a watch of the object store's
// meta messages) rather than by reading every meta of the bucket, which
// took a listing of 5,000 files five passes over the bucket (one per page)
// and made every delete read the whole bucket. The index lags storage by a
// moment, so a listing first waits until it holds the last meta message
// storage has acknowledged (one read through the stream leader): it shows
// every change acknowledged before it was asked, as a listing of the
// stream itself would. A purge waits for the meta message that replaced or
// deleted the version.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// catalogWait bounds how long an answer waits for the files index to catch
// up before reading the bucket itself. Under many clients' writes the
// watch lags the stream by up to a second (32 clients of mixed work: most
// listings waited that long), and a watch whose consumer is being recreated
// after its broker died lags for seconds; reading the bucket is faster.
const catalogWait = 100 * time.Millisecond

// errIndexBehind says the files index did not catch up in time.
var errIndexBehind = errors.New("files index behind storage")

// lastFileChange is the stream sequence of the last meta message stored:
// 0 when there is none.
func (s *Server) lastFileChange(ctx context.Context) (uint64, error) {
	m, err := s.leaderGet(ctx, leaderGetRequest{LastFor: subjects.ObjectMetas(s.cfg.Bucket)})
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("last file change: %w", err)
	}
	return m.Sequence, nil
}

// syncCatalog waits until the files index holds every file change storage
// has acknowledged so far; errIndexBehind when it does not in time.
func (s *Server) syncCatalog(ctx context.Context) error {
	seq, err := s.lastFileChange(ctx)
	if err != nil {
		return err
	}
	if s.usage.filesAhead(seq) {
		return fmt.Errorf("%w: it holds changes past the last one stored (a stream lost or replaced)", errIndexBehind)
	}
	return s.catalogAt(ctx, seq)
}

// catalogAt waits until the files index holds the meta messages up to
// stream sequence seq; errIndexBehind when it does not in time.
func (s *Server) catalogAt(ctx context.Context, seq uint64) error {
	wctx, cancel := context.WithTimeout(ctx, catalogWait)
	defer cancel()
	if err := s.usage.waitFor(wctx, seq, 0); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: %v", errIndexBehind, err)
	}
	return nil
}

// listFiles cuts the page r asks for out of the index.
func (u *usage) listFiles(r subjects.ListRequest) subjects.ListReply {
	r.Limit = pageLimit(r)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.names == nil {
		u.names = make([]string, 0, len(u.files))
		for name := range u.files {
			u.names = append(u.names, name)
		}
		slices.Sort(u.names)
	}
	from, _ := slices.BinarySearch(u.names, r.Prefix)
	if r.After >= r.Prefix {
		from, _ = slices.BinarySearch(u.names, r.After)
		if from < len(u.names) && u.names[from] == r.After {
			from++
		}
	}
	reply := subjects.ListReply{Files: []subjects.FileInfo{}}
	for _, name := range u.names[from:] {
		if !strings.HasPrefix(name, r.Prefix) {
			break
		}
		if len(reply.Files) == r.Limit {
			reply.More = true
			break
		}
		reply.Files = append(reply.Files, u.files[name].FileInfo)
	}
	return reply
}

// references says whether a live file holds version nuid.
func (u *usage) references(nuid string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, f := range u.files {
		if f.Version == nuid {
			return true
		}
	}
	return false
}

// filesAhead says whether the index holds a meta message past seq, the last
// one stored: the stream was replaced (its data lost) or its last message
// purged. The files watch then starts over, so that the index cannot go on
// answering for a stream that is gone.
func (u *usage) filesAhead(seq uint64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.filesSeq <= seq {
		return false
	}
	select {
	case <-u.filesStale:
	default:
		close(u.filesStale)
	}
	return true
}

// indexedObject is name's file as the index holds it: its meta, as far as
// the index keeps it, at the sequence it was stored, or the zero object
// when the index holds no live file of that name.
func (u *usage) indexedObject(bucket, name string) object {
	u.mu.Lock()
	f, ok := u.files[name]
	u.mu.Unlock()
	if !ok {
		return object{}
	}
	return object{seq: f.seq, info: jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{
			Name:     f.Name,
			Metadata: map[string]string{subjects.MetaOwner: f.Owner},
		},
		Bucket:  bucket,
		NUID:    f.Version,
		Size:    uint64(f.Size),
		ModTime: f.Modified,
		Chunks:  f.Chunks,
		Digest:  f.Digest,
	}}
}

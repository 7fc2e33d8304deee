package fileserver

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

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// catalogWait bounds how long an answer waits for the files index to catch
// up before reading the bucket itself. Under many clients' writes the
// watch lags the stream by up to a second, and a watch whose consumer is
// being recreated after its broker died lags for seconds; reading the
// bucket is faster.
const catalogWait = 100 * time.Millisecond

// errIndexBehind says the files index did not catch up in time.
var errIndexBehind = errors.New("files index behind storage")

// lastFileChange is the stream sequence of the last meta message stored:
// 0 when there is none.
func (s *Server) lastFileChange(ctx context.Context) (uint64, error) {
	m, err := s.leaderGet(ctx, store.MsgRequest{LastFor: subjects.ObjectMetas(s.cfg.Bucket)})
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
	return s.catchUpFiles(ctx, true, s.catalogAt)
}

// catchUpFiles waits, with wait, until the files index holds every meta
// message stored so far. It asks for the stream's last message, whatever
// its subject, and for the first meta message from the index's position
// on, both found without walking every meta subject the broker holds (as
// asking for the last meta message, lastFileChange, does: a cost every
// page of a listing would pay, so it is asked only when the stream's last
// message is gone), and waits for each one found until none is left up to
// the last message.
// With ahead set, an index holding a meta message past the last one
// stored (none at or after its position: the stream was lost or
// replaced, or its last meta purged) is not trusted: errIndexBehind, and
// the watch starts over (filesAhead).
func (s *Server) catchUpFiles(ctx context.Context, ahead bool, wait func(context.Context, uint64) error) error {
	// Where the index was before storage was asked: a meta applied after
	// the answer left storage is not a sign of a stream lost.
	held, _ := s.usage.filesProgress()
	last, err := s.leaderGet(ctx, store.MsgRequest{LastFor: ">"})
	if err != nil {
		// The stream's last message deleted (an aborted upload's chunk
		// purged), or none at all: ask for the last meta message.
		seq, err := s.lastFileChange(ctx)
		if err != nil {
			return err
		}
		if ahead && held > seq && s.usage.filesAhead(seq) {
			return errIndexAhead
		}
		return wait(ctx, seq)
	}
	if ahead && held > last.Sequence && s.usage.filesAhead(last.Sequence) {
		return errIndexAhead
	}
	at, _ := s.usage.filesProgress()
	from := at + 1
	if ahead && at > 0 {
		from = at // its own last meta, or a later one, must be there
	}
	for {
		m, err := s.leaderGet(ctx, store.MsgRequest{Seq: from, NextFor: subjects.ObjectMetas(s.cfg.Bucket)})
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			if from == at && s.usage.filesAhead(at-1) {
				return errIndexAhead
			}
			return nil
		case err != nil:
			return fmt.Errorf("next file change: %w", err)
		case m.Sequence > last.Sequence:
			return nil
		}
		if err := wait(ctx, m.Sequence); err != nil {
			return err
		}
		now, _ := s.usage.filesProgress()
		from, at = max(now, m.Sequence)+1, 0
	}
}

var errIndexAhead = fmt.Errorf("%w: it holds changes past the last one stored (a stream lost or replaced)", errIndexBehind)

// catalogLoadStall is how long an index still loading what the bucket
// held as its watch began (a server's start) may go without moving before
// an answer reads the bucket itself. Reading the bucket means reading
// every meta message, as the load does, and holding every file's
// ObjectInfo at once: no quicker than the load, so while the load moves,
// waiting for it is the faster way.
const catalogLoadStall = 2 * time.Second

// catalogAt waits until the files index holds the meta messages up to
// stream sequence seq, and, if it was loading, until it has loaded;
// errIndexBehind when it does not in time: within catalogWait, or while
// it loads, before it stalls for catalogLoadStall.
func (s *Server) catalogAt(ctx context.Context, seq uint64) error {
	at, loading := s.usage.filesProgress()
	moved := time.Now()
	for {
		wctx, cancel := context.WithTimeout(ctx, catalogWait)
		err := s.usage.waitFor(wctx, seq, 0)
		if err == nil && loading {
			// Past seq, but not yet holding every file: a snapshot
			// installed, its changes still coming, or the last messages
			// of a load in. Answering now would list too little, and
			// reading the bucket instead takes longer than the load.
			err = s.usage.waitLoaded(wctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		now, still := s.usage.filesProgress()
		if now != at {
			at, moved = now, time.Now()
		}
		if !loading || !still || time.Since(moved) >= catalogLoadStall {
			return fmt.Errorf("%w: %v", errIndexBehind, err)
		}
	}
}

// filesProgress is the last meta message the index applied, and whether
// it is still loading what the bucket held as its watch began.
func (u *usage) filesProgress() (uint64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.filesSeq, u.loading
}

// filesLoaded records that the index holds what the bucket held as its
// watch began (at began, reading it in full unless it started from a
// snapshot), and says how many files that is.
func (u *usage) filesLoaded(full bool, began time.Time) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.loading = false
	if full {
		u.fullRead = began
	}
	u.signal()
	return len(u.files)
}

// waitLoaded waits until the index is no longer loading.
func (u *usage) waitLoaded(ctx context.Context) error {
	if err := u.await(ctx, func() bool { return !u.loading }); err != nil {
		return fmt.Errorf("files index still loading: %w", err)
	}
	return nil
}

// loadedListing is listVisible, or ok false when the index is loading: its
// watch started over (filesAhead, by another request) after the caller
// caught up with storage, and an index half loaded would list too little.
func (u *usage) loadedListing(r subjects.ListRequest, visible func(string) bool) (subjects.ListReply, bool) {
	u.mu.Lock()
	loading := u.loading
	u.mu.Unlock()
	if loading {
		return subjects.ListReply{}, false
	}
	return u.listVisible(r, visible), true
}

// listFiles cuts the page r asks for out of the index.
func (u *usage) listFiles(r subjects.ListRequest) subjects.ListReply { return u.listVisible(r, nil) }

// listVisible is listFiles of the names visible accepts (every name when
// nil; access.go): the page is cut after the filter, so that it is full
// and More says whether a visible name follows.
//
// Its names are kept sorted between listings: sorting a million names
// took a listing after any file came or went most of a second. A name
// that comes joins u.added, a short list merged in as the page is cut; a
// name that goes stays in u.names, skipped as the page is cut, until they
// are too many (u.stale) and the next listing sorts every name again.
func (u *usage) listVisible(r subjects.ListRequest, visible func(string) bool) subjects.ListReply {
	r.Limit = pageLimit(r)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.names == nil {
		u.names = make([]string, 0, len(u.files))
		for name := range u.files {
			u.names = append(u.names, name)
		}
		slices.Sort(u.names)
		u.added, u.addedSorted, u.stale = nil, true, 0
	}
	if !u.addedSorted {
		slices.Sort(u.added)
		u.addedSorted = true
	}
	start := func(names []string) []string {
		from, _ := slices.BinarySearch(names, r.Prefix)
		if r.After >= r.Prefix {
			from, _ = slices.BinarySearch(names, r.After)
			for from < len(names) && names[from] == r.After {
				from++ // added may hold a name twice
			}
		}
		return names[from:]
	}
	names, added := start(u.names), start(u.added)
	reply := subjects.ListReply{Files: []subjects.FileInfo{}}
	last := ""
	for len(names) > 0 || len(added) > 0 {
		var name string
		if len(added) == 0 || (len(names) > 0 && names[0] <= added[0]) {
			name, names = names[0], names[1:]
		} else {
			name, added = added[0], added[1:]
		}
		if !strings.HasPrefix(name, r.Prefix) {
			break
		}
		rec, live := u.files[name]
		if !live || (name == last && len(reply.Files) > 0) {
			continue // gone, or met twice (it came, went and came back)
		}
		if visible != nil && !visible(name) {
			continue
		}
		if len(reply.Files) == r.Limit {
			reply.More = true
			break
		}
		reply.Files = append(reply.Files, u.info(rec))
		last = name
	}
	return reply
}

// nameCame and nameWent keep u.names (listFiles) as a file comes or goes;
// u.mu is held.
func (u *usage) nameCame(name string) {
	if u.names == nil {
		return
	}
	if i, found := slices.BinarySearch(u.names, name); found && u.names[i] == name {
		u.stale-- // it went and came back
		return
	}
	u.added = append(u.added, name)
	u.addedSorted = false
	u.stale++
	u.tooStale()
}

func (u *usage) nameWent() {
	if u.names == nil {
		return
	}
	u.stale++
	u.tooStale()
}

// tooStale drops the sorted names once the names that came or went since
// they were sorted are many: the next listing sorts them all again.
func (u *usage) tooStale() {
	if u.stale > len(u.names)/8+256 {
		u.names, u.added, u.stale = nil, nil, 0
	}
}

// references says whether a live file holds version nuid; true while the
// index is loading (see holding).
func (u *usage) references(nuid string) bool {
	held, ok := u.holding(map[string]uint64{nuid: 0})
	return !ok || held[nuid]
}

// holding says which of versions a live file holds, in one pass over
// the index. ok is false while the index is loading: the watch started
// over since the caller caught up (filesAhead), so the index does not hold
// every file yet and cannot say that none points at a version. The caller
// keeps the chunks; the sweep finds them if they are orphans.
func (u *usage) holding(versions map[string]uint64) (held map[string]bool, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.loading {
		return nil, false
	}
	held = map[string]bool{}
	for _, r := range u.files {
		v := r.version()
		if _, queued := versions[v]; queued {
			held[v] = true
		}
	}
	return held, true
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
	u.startOverLocked()
	return true
}

// startOver makes the files watch start over, reading every file afresh.
func (u *usage) startOver() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.startOverLocked()
}

func (u *usage) startOverLocked() {
	select {
	case <-u.filesStale:
	default:
		close(u.filesStale)
	}
}

// indexedObject is name's file as the index holds it: its meta, as far as
// the index keeps it, at the sequence it was stored, or the zero object
// when the index holds no live file of that name.
func (u *usage) indexedObject(bucket, name string) object {
	u.mu.Lock()
	defer u.mu.Unlock()
	r, ok := u.files[name]
	if !ok {
		return object{}
	}
	f := u.info(r)
	return object{seq: r.seq(), info: jetstream.ObjectInfo{
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

package fileserver

// Per-user limits (Config.MaxFileSize, UserQuota, MaxOpenUploads,
// MaxTransfers). No check lists a bucket: every server keeps an index of
// what each user stores and moves, fed by watches of storage:
//
//   - files: every live file (owner, size and what a listing shows), from
//     the object store's meta messages; listings and the purge of a
//     replaced version read it too (catalog.go);
//   - uploads: the owner, announced size, stored bytes (as of the last
//     checkpoint) and last activity of every unfinished upload, from the
//     uploads bucket;
//   - downloads: the downloads running, which the servers announce to each
//     other on subjects.TransferEvents as they serve their batches.
//
// A watch lags storage by a moment. A check that would refuse, or pass
// with less than a quarter of a limit to spare, first waits until the
// indexes have caught up with storage as it is then, and looks again:
// nobody is refused because of a file deleted, or an upload finished, a
// moment ago on the other server, and what a user did a moment ago counts
// against their next request wherever it goes (an upload's open always
// waits). Requests racing each other may still overshoot a limit by what
// they bring together.
//
// This file is the indexes' accounting; the checks are in limits.go, the
// watches in watch.go, the download notices in downloadnotice.go.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

type uploadUse struct {
	reserve int64     // announced size, or the bytes stored when more or unknown
	active  time.Time // opened, resumed, checkpointed or (direct) its last chunk stored
	direct  bool      // its client stores the chunks and writes no checkpoints
}

// downloadKey names a running download: its user and its reply subject
// without the last token (client.Get asks every batch on prefix.N).
type downloadKey struct{ user, id string }

// usage is a server's index of what each user stores and moves. Its
// methods are the accounting; the watches that feed it are Server methods.
type usage struct {
	mu          sync.Mutex
	files       map[string]fileRecord           // live files by name, as their last meta message says (filerecord.go)
	owners      []string                        // the files' owners, by the number their records hold
	ownerIDs    map[string]uint32               // the numbers of owners
	loading     bool                            // the files watch has not yet delivered what the bucket held as it began
	names       []string                        // names of files, sorted as of the last listing; nil: not sorted (listFiles)
	added       []string                        // names that came since names was sorted
	addedSorted bool                            // added is sorted
	stale       int                             // names that came or went since names was sorted
	filesStale  chan struct{}                   // closed to make the files watch start over
	stored      map[string]int64                // bytes of live files by owner
	filesSeq    uint64                          // last meta message applied
	fullRead    time.Time                       // when the index was last read in full from storage (snapshot.go)
	uploads     map[string]map[string]uploadUse // unfinished uploads by owner and ID
	uploadOwner map[string]string               // owner by upload ID
	uploadsSeq  uint64                          // last uploads bucket revision applied
	downloads   map[downloadKey]time.Time       // running downloads: until when they count
	changed     chan struct{}                   // closed and replaced at every change
}

func newUsage() *usage {
	u := &usage{changed: make(chan struct{})}
	u.resetFiles()
	u.resetUploads()
	u.downloads = map[downloadKey]time.Time{}
	return u
}

// signal wakes the waiters of waitFor; u.mu is held.
func (u *usage) signal() {
	close(u.changed)
	u.changed = make(chan struct{})
}

// resetFiles forgets every file, for a watch that starts over.
func (u *usage) resetFiles() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files, u.stored, u.filesSeq, u.names, u.added, u.stale = map[string]fileRecord{}, map[string]int64{}, 0, nil, nil, 0
	u.owners, u.ownerIDs, u.loading, u.fullRead = nil, map[string]uint32{}, true, time.Time{}
	u.filesStale = make(chan struct{})
}

// resetUploads forgets every upload, for a watch that starts over.
func (u *usage) resetUploads() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.uploads, u.uploadOwner, u.uploadsSeq = map[string]map[string]uploadUse{}, map[string]string{}, 0
}

// putFile applies the meta message at stream sequence seq: f.Name now
// holds f, or nothing when it is not live. An empty name only moves the
// sequence on (a message that could not be read).
func (u *usage) putFile(seq uint64, f subjects.FileInfo, live bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	old, had := u.files[f.Name]
	if had {
		owner := u.owners[old.ownerNumber()]
		u.stored[owner] -= old.size()
		if u.stored[owner] == 0 {
			delete(u.stored, owner)
		}
		delete(u.files, f.Name)
	}
	live = live && f.Name != ""
	if live {
		r := u.pack(f, seq)
		u.files[r.name()] = r // the key shares the record's memory
		u.stored[f.Owner] += f.Size
		if !had {
			u.nameCame(r.name())
		}
	} else if had {
		u.nameWent()
	}
	u.filesSeq = max(u.filesSeq, seq)
	u.signal()
}

// putUpload applies the uploads bucket entry at revision seq: the record of
// upload id, or nil when it is gone. A committed upload is no longer
// counted: its file is.
func (u *usage) putUpload(seq uint64, id string, rec *uploadRecord) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if owner, ok := u.uploadOwner[id]; ok {
		delete(u.uploads[owner], id)
		if len(u.uploads[owner]) == 0 {
			delete(u.uploads, owner)
		}
		delete(u.uploadOwner, id)
	}
	if rec != nil && rec.Committed == nil {
		if u.uploads[rec.Owner] == nil {
			u.uploads[rec.Owner] = map[string]uploadUse{}
		}
		u.uploads[rec.Owner][id] = uploadUse{reserve: max(rec.Size, rec.Bytes), active: rec.Updated, direct: rec.Direct}
		u.uploadOwner[id] = rec.Owner
	}
	u.uploadsSeq = max(u.uploadsSeq, seq)
	u.signal()
}

// waitFor waits until the indexes hold storage up to the given sequences.
func (u *usage) waitFor(ctx context.Context, filesSeq, uploadsSeq uint64) error {
	err := u.await(ctx, func() bool { return u.filesSeq >= filesSeq && u.uploadsSeq >= uploadsSeq })
	if err != nil {
		u.mu.Lock()
		atFiles, atUploads := u.filesSeq, u.uploadsSeq
		u.mu.Unlock()
		return fmt.Errorf("usage index at files %d, uploads %d of %d, %d: %w", atFiles, atUploads, filesSeq, uploadsSeq, err)
	}
	return nil
}

// await waits until ready, called with u.mu held, says so, looking again
// at every change of the indexes.
func (u *usage) await(ctx context.Context, ready func() bool) error {
	for {
		u.mu.Lock()
		ok, changed := ready(), u.changed
		u.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// used is what user stores: their live files and their unfinished uploads
// but except.
func (u *usage) used(user, except string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := u.stored[user]
	for id, up := range u.uploads[user] {
		if id != except {
			n += up.reserve
		}
	}
	return n
}

// fileSize is the size of name if user owns it, else 0: what replacing it
// gives back to user's quota.
func (u *usage) fileSize(name, user string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if r, ok := u.files[name]; ok && u.owners[r.ownerNumber()] == user {
		return r.size()
	}
	return 0
}

// unfinishedUploads counts every user's unfinished uploads.
func (u *usage) unfinishedUploads() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.uploadOwner)
}

// openUploads counts user's unfinished uploads.
func (u *usage) openUploads(user string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.uploads[user])
}

// transfers counts user's transfers running at now: uploads active within
// TransferIdle and downloads still counting, but except.
func (u *usage) transfers(user string, now time.Time, except downloadKey) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, up := range u.uploads[user] {
		if now.Sub(up.active) < TransferIdle {
			n++
		}
	}
	for k, until := range u.downloads {
		if k.user == user && k != except && now.Before(until) {
			n++
		}
	}
	return n
}

// quietDirect lists user's direct uploads that look idle at now: their
// records tell only when they were opened or resumed.
func (u *usage) quietDirect(user string, now time.Time) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var ids []string
	for id, up := range u.uploads[user] {
		if up.direct && now.Sub(up.active) >= TransferIdle {
			ids = append(ids, id)
		}
	}
	return ids
}

// storedAt records that upload id stored a chunk at t.
func (u *usage) storedAt(id string, t time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if up, ok := u.uploads[u.uploadOwner[id]][id]; ok && t.After(up.active) {
		up.active = t
		u.uploads[u.uploadOwner[id]][id] = up
	}
}

// running says whether a download counts at now.
func (u *usage) running(k downloadKey, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return now.Before(u.downloads[k])
}

// download records that k counts until then (a zero time: it has ended),
// and forgets the downloads that no longer count.
func (u *usage) download(k downloadKey, until time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if until.IsZero() {
		delete(u.downloads, k)
		return
	}
	if _, ok := u.downloads[k]; !ok {
		now := time.Now()
		for old, t := range u.downloads {
			if !now.Before(t) {
				delete(u.downloads, old)
			}
		}
	}
	u.downloads[k] = until
}

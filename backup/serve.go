package backup

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/fileserver"
	"github.com/ftfs/ftfs/subjects"
)

// The replica serves reads while JetStream has lost its quorum: it is the
// one copy of every file that needs no broker to read.
var _ fileserver.Fallback = (*Replica)(nil)

func (e entry) info(name string) subjects.FileInfo {
	return subjects.FileInfo{
		Name: name, Size: e.Size, Modified: e.MTime, Owner: e.Owner, Digest: e.Digest, Version: e.NUID,
		Chunks: uint32((e.Size + subjects.ChunkSize - 1) / subjects.ChunkSize),
	}
}

// pendingInfo describes a version the replica has seen stored and not yet
// copied.
func pendingInfo(o *jetstream.ObjectInfo) subjects.FileInfo {
	return subjects.FileInfo{
		Name: o.Name, Size: int64(o.Size), Modified: o.ModTime, Owner: o.Metadata[subjects.MetaOwner],
		Digest: o.Digest, Version: o.NUID, Chunks: o.Chunks, Pending: true,
	}
}

// List returns every replicated file, sorted by name, and every file whose
// newest version the replica has seen but not yet copied, marked Pending
// (in place of an older copy it holds): a file stored a moment before
// storage lost its quorum is listed, never silently left out.
func (r *Replica) List() []subjects.FileInfo {
	pend := r.pend.infos()
	r.mu.Lock()
	out := make([]subjects.FileInfo, 0, len(r.manifest)+len(pend))
	for name, e := range r.manifest {
		if _, ok := pend[name]; !ok {
			out = append(out, e.info(name))
		}
	}
	r.mu.Unlock()
	for _, o := range pend {
		out = append(out, pendingInfo(o))
	}
	slices.SortFunc(out, func(a, b subjects.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lag says how many changes the replica has seen and not yet applied, and
// when it saw the oldest of them; AsOf is when its watch of the bucket
// last delivered a change.
func (r *Replica) Lag() subjects.ReplicaLag {
	n, oldest := r.pend.lag()
	lag := subjects.ReplicaLag{Pending: n, Oldest: oldest}
	if h := r.heard.Load(); h != 0 {
		lag.AsOf = time.Unix(0, h).UTC()
	}
	return lag
}

// Open opens name's replicated copy with its description; the two belong
// to the same version even if the file is replaced meanwhile. A file whose
// newest version is not copied yet is refused with ReasonReplicaPending
// (the copy it may hold is older than what storage has).
func (r *Replica) Open(name string) (*os.File, subjects.FileInfo, error) {
	p, err := r.localPath(name)
	if err != nil {
		return nil, subjects.FileInfo{}, r.notFound(name)
	}
	if o, seen, ok := r.pend.pendingInfo(name); ok {
		return nil, subjects.FileInfo{}, subjects.Rejectf(subjects.CodeNotFound, subjects.ReasonReplicaPending,
			"%q (version %s) is stored but not yet copied into the backup's replica (seen stored %s ago): read it from storage once it has its quorum again",
			name, o.NUID, time.Since(seen).Round(100*time.Millisecond))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.manifest[name]
	if !ok {
		return nil, subjects.FileInfo{}, r.notFound(name)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, subjects.FileInfo{}, r.notFound(name)
	}
	if err != nil {
		return nil, subjects.FileInfo{}, err
	}
	return f, e.info(name), nil
}

// notFound says name is not in the replica, and how far behind it is.
func (r *Replica) notFound(name string) error {
	n, oldest := r.pend.lag()
	if n == 0 {
		return subjects.Errorf(subjects.CodeNotFound, "no file %q in the backup's replica (which has copied every change it has seen)", name)
	}
	return subjects.Errorf(subjects.CodeNotFound, "no file %q in the backup's replica, which is %d change(s) behind (the oldest seen %s ago)",
		name, n, time.Since(oldest).Round(100*time.Millisecond))
}

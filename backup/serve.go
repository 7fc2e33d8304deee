package backup

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/ftfs/ftfs/primary"
	"github.com/ftfs/ftfs/subjects"
)

// The replica serves reads while JetStream has lost its quorum: it is the
// one copy of every file that needs no broker to read.
var _ primary.Fallback = (*Replica)(nil)

func (e entry) info(name string) subjects.FileInfo {
	return subjects.FileInfo{
		Name: name, Size: e.Size, Modified: e.MTime, Owner: e.Owner, Digest: e.Digest, Version: e.NUID,
		Chunks: uint32((e.Size + subjects.ChunkSize - 1) / subjects.ChunkSize),
	}
}

// List returns every replicated file, sorted by name.
func (r *Replica) List() []subjects.FileInfo {
	r.mu.Lock()
	out := make([]subjects.FileInfo, 0, len(r.manifest))
	for name, e := range r.manifest {
		out = append(out, e.info(name))
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b subjects.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Open opens name's replicated copy with its description; the two belong
// to the same version even if the file is replaced meanwhile.
func (r *Replica) Open(name string) (*os.File, subjects.FileInfo, error) {
	p, err := r.localPath(name)
	if err != nil {
		return nil, subjects.FileInfo{}, subjects.Errorf(subjects.CodeNotFound, "no file %q in the replica", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.manifest[name]
	if !ok {
		return nil, subjects.FileInfo{}, subjects.Errorf(subjects.CodeNotFound, "no file %q in the replica", name)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, subjects.FileInfo{}, subjects.Errorf(subjects.CodeNotFound, "no file %q in the replica", name)
	}
	if err != nil {
		return nil, subjects.FileInfo{}, err
	}
	return f, e.info(name), nil
}

package fileserver

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// TestCatalogPagesLikeAFullListing checks the index's pages against page()
// over a full sorted listing (what a server without the index answers),
// for random names, prefixes, cursors and limits, while files come and go.
func TestCatalogPagesLikeAFullListing(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	u := newUsage()
	u.filesLoaded(true, time.Now()) // fed here directly, as a watch that has loaded the bucket feeds it
	live := map[string]subjects.FileInfo{}
	seg := []string{"a", "b", "ab", "docs", "docs/x", "z", "é"}
	name := func() string {
		var b strings.Builder
		for i := range 1 + rng.IntN(3) {
			if i > 0 {
				b.WriteByte('/')
			}
			b.WriteString(seg[rng.IntN(len(seg))])
		}
		return b.String()
	}
	for seq := uint64(1); seq < 3000; seq++ {
		n := name()
		if rng.IntN(3) == 0 {
			u.putFile(seq, subjects.FileInfo{Name: n}, false)
			delete(live, n)
		} else {
			f := subjects.FileInfo{Name: n, Size: int64(seq), Owner: "alice", Version: fmt.Sprint("v", seq)}
			u.putFile(seq, f, true)
			live[n] = f
		}
		if seq%7 != 0 {
			continue
		}
		var all []subjects.FileInfo
		for _, f := range live {
			all = append(all, f)
		}
		slices.SortFunc(all, func(a, b subjects.FileInfo) int { return strings.Compare(a.Name, b.Name) })
		r := subjects.ListRequest{Prefix: []string{"", "a", "docs", "docs/", "zz"}[rng.IntN(5)], Limit: rng.IntN(5)}
		if rng.IntN(2) == 0 {
			r.After = name()
		}
		if got, want := u.listFiles(r), page(r, all); !reflect.DeepEqual(got, want) {
			t.Fatalf("after change %d, %+v: index says %+v, listing %+v", seq, r, got, want)
		}
		if f, ok := live[n]; ok && !u.references(f.Version) {
			t.Fatalf("version %s of %q not referenced", f.Version, n)
		}
	}
	if u.references("never") {
		t.Fatal("an unknown version is referenced")
	}
}

// TestCatalogAheadOfStorageStartsOver: an index holding a change past the
// last one stored (the stream was lost and created again) is not trusted,
// and its watch is asked to start over, once.
func TestCatalogAheadOfStorageStartsOver(t *testing.T) {
	u := newUsage()
	u.putFile(40, subjects.FileInfo{Name: "gone"}, true)
	if u.filesAhead(40) || u.filesAhead(41) {
		t.Fatal("an index level with storage is taken for ahead")
	}
	stale := u.filesStale
	for range 2 { // asking twice closes the channel once
		if !u.filesAhead(3) {
			t.Fatal("an index past storage is trusted")
		}
	}
	select {
	case <-stale:
	default:
		t.Fatal("the files watch is not asked to start over")
	}
	u.resetFiles()
	if u.filesAhead(3) {
		t.Fatal("a fresh index is taken for ahead")
	}
}

// TestAnIndexLoadingAgainAnswersNothing: a watch that starts over (the
// index found ahead of storage, by any request) empties the index and
// loads it again. Meanwhile a request that had caught up with storage
// just before must not list from it (an empty listing was answered, and
// the bench's mixed work caught it), nor take a version for unreferenced
// and purge a live file's chunks.
func TestAnIndexLoadingAgainAnswersNothing(t *testing.T) {
	u := newUsage()
	u.filesLoaded(true, time.Now())
	u.putFile(1, subjects.FileInfo{Name: "kept.txt", Owner: "alice", Size: 3, Version: "V1"}, true)
	if l, ok := u.loadedListing(subjects.ListRequest{}, nil); !ok || len(l.Files) != 1 {
		t.Fatalf("loaded index lists %+v, %v", l, ok)
	}
	u.resetFiles() // the watch starts over
	if l, ok := u.loadedListing(subjects.ListRequest{}, nil); ok {
		t.Fatalf("an index loading again listed %+v", l)
	}
	if !u.references("V1") || !u.references("anything") {
		t.Fatal("an index loading again said a version is unreferenced")
	}
	u.putFile(1, subjects.FileInfo{Name: "kept.txt", Owner: "alice", Size: 3, Version: "V1"}, true)
	u.filesLoaded(true, time.Now())
	if u.references("anything") || !u.references("V1") {
		t.Fatal("a loaded index answers references wrongly")
	}
}

// The purger asks, for a batch of versions, which a live file still holds:
// one pass over the index, and nothing while it loads.
func TestHoldingAnswersForABatchOfVersions(t *testing.T) {
	u := newUsage()
	u.filesLoaded(true, time.Now())
	u.putFile(1, subjects.FileInfo{Name: "a.txt", Owner: "alice", Size: 3, Version: "V1"}, true)
	u.putFile(2, subjects.FileInfo{Name: "b.txt", Owner: "alice", Size: 3, Version: "V2"}, true)
	u.putFile(3, subjects.FileInfo{Name: "renamed-half-way.txt", Owner: "alice", Size: 3, Version: "V2"}, true)
	u.putFile(4, subjects.FileInfo{Name: "b.txt"}, false) // deleted; its version lives on in the other name
	u.putFile(5, subjects.FileInfo{Name: "a.txt", Owner: "alice", Size: 3, Version: "V3"}, true)
	held, ok := u.holding(map[string]uint64{"V1": 5, "V2": 4, "V9": 0})
	if !ok || len(held) != 1 || !held["V2"] {
		t.Fatalf("holding V1 (replaced), V2 (one name left), V9 (never named): %v, %v; want only V2", held, ok)
	}
	u.resetFiles()
	if held, ok := u.holding(map[string]uint64{"V1": 5}); ok {
		t.Fatalf("an index loading again answered %v", held)
	}
}

package fileserver

import (
	"testing"

	"github.com/ftfs/ftfs/subjects"
)

func TestLinkCovers(t *testing.T) {
	file := shareRecord{ID: "1", Owner: "alice", Kind: subjects.LinkDownload, Name: "media/clip.mp4"}
	folder := shareRecord{ID: "2", Owner: "alice", Kind: subjects.LinkUpload, Prefix: "inbox"}
	for _, tc := range []struct {
		rec  shareRecord
		name string
		ok   bool
	}{
		{file, "media/clip.mp4", true},
		{file, "media/clip.mp", false},
		{file, "media/clip.mp4/x", false},
		{folder, "inbox/a.txt", true},
		{folder, "inbox/deep/a.txt", true},
		{folder, "inbox", false},
		{folder, "inboxes/a.txt", false},
		{folder, "inbox/../etc", false},
		{folder, "inbox//a", false},
	} {
		if err := linkCovers(tc.rec, tc.name); (err == nil) != tc.ok {
			t.Errorf("link %s %q%q covers %q: %v, want ok=%v", tc.rec.Kind, tc.rec.Name, tc.rec.Prefix, tc.name, err, tc.ok)
		}
	}
}

func TestShareRecordValid(t *testing.T) {
	for _, tc := range []struct {
		rec shareRecord
		ok  bool
	}{
		{shareRecord{ID: "1", Owner: "a", Kind: subjects.LinkDownload, Name: "f"}, true},
		{shareRecord{ID: "1", Owner: "a", Kind: subjects.LinkUpload, Prefix: "p"}, true},
		{shareRecord{ID: "1", Owner: "a", Kind: subjects.LinkDownload, Name: "f", Prefix: "p"}, false},
		{shareRecord{ID: "1", Owner: "a", Kind: subjects.LinkUpload, Name: "f"}, false},
		{shareRecord{ID: "1", Kind: subjects.LinkDownload, Name: "f"}, false},
		{shareRecord{Owner: "a", Kind: subjects.LinkDownload, Name: "f"}, false},
		{shareRecord{ID: "1", Owner: "a", Kind: "admin", Name: "f"}, false},
	} {
		if tc.rec.valid() != tc.ok {
			t.Errorf("%+v valid() = %v", tc.rec, !tc.ok)
		}
	}
}

func TestNewLinkToken(t *testing.T) {
	a, idA, err := newLinkToken()
	if err != nil {
		t.Fatal(err)
	}
	b, idB, _ := newLinkToken()
	if !subjects.ValidLinkToken(a) || a == b || idA == idB || len(idA) != 10 {
		t.Fatalf("tokens %q %q, IDs %q %q", a, b, idA, idB)
	}
	if linkKey(a) == linkKey(b) || linkKey(a) == sessionKey(a) {
		t.Fatal("link keys collide, or a link's key is its token's session key")
	}
}

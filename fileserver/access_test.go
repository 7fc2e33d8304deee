package fileserver

import (
	"encoding/json"
	"testing"

	"github.com/ftfs/ftfs/subjects"
)

// teamPolicy is a record as a team might set it up: @eng = alice, bob; a
// project whose rule names the group; a deeper folder with a rule of its
// own; carol's home opened for reading.
func teamPolicy(t *testing.T) *accessPolicy {
	t.Helper()
	rec := accessRecord{
		Rules: map[string]storedRule{
			"projects/x/":        {Lines: []string{"read,list: @eng", "write,delete,admin: alice"}},
			"projects/x/secret/": {Lines: []string{"read,list,write: alice"}},
			"projects/x/drop/":   {Lines: []string{"write: *", "read,list: alice"}},
			"home/carol/public/": {Lines: []string{"read,list: *", "read,list,write,delete,admin: carol"}},
			"projects/x/ghosts/": {Lines: []string{"read: @gone"}},
			"projects/x/index/":  {Lines: []string{"list: *"}},
		},
		Groups: map[string][]string{"eng": {"alice", "bob"}},
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parsePolicy(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAccessResolution(t *testing.T) {
	p := teamPolicy(t)
	const (
		r = mayRead
		l = mayListName
		w = mayWrite
		d = mayDelete
		a = mayAdmin
	)
	for _, tc := range []struct {
		name, user string
		want       rights
		from       string // the governing folder
	}{
		// The root's built-in rule: everyone reads, lists and adds.
		{"a.txt", "bob", r | l | w, ""},
		{"docs/deep/a.txt", "carol", r | l | w, ""},
		// home/ is nobody's; each home its user's alone.
		{"home/a.txt", "alice", 0, "home/"},
		{"home/alice/a.txt", "alice", allRights, "home/alice/"},
		{"home/alice/sub/deeper/a.txt", "alice", allRights, "home/alice/"},
		{"home/alice/a.txt", "bob", 0, "home/alice/"},
		{"home/alice/", "bob", 0, "home/alice/"},
		{"home/alicex/a.txt", "alice", 0, "home/alicex/"},
		// A stored rule below a home replaces the home's below it.
		{"home/carol/public/a.txt", "bob", r | l, "home/carol/public/"},
		{"home/carol/public/a.txt", "carol", allRights, "home/carol/public/"},
		{"home/carol/private.txt", "bob", 0, "home/carol/"},
		// A group, and lines adding up for one member.
		{"projects/x/a.txt", "bob", r | l, "projects/x/"},
		{"projects/x/a.txt", "alice", allRights, "projects/x/"},
		{"projects/x/a.txt", "carol", 0, "projects/x/"},
		{"projects/x/sub/a.txt", "bob", r | l, "projects/x/"},
		// The nearest rule decides alone: no merging with the parent's.
		{"projects/x/secret/a.txt", "bob", 0, "projects/x/secret/"},
		{"projects/x/secret/a.txt", "alice", r | l | w, "projects/x/secret/"},
		{"projects/x/drop/a.txt", "carol", w, "projects/x/drop/"},
		// A rule naming a group that does not exist gives nothing.
		{"projects/x/ghosts/a.txt", "bob", 0, "projects/x/ghosts/"},
		// Outside the project the root's rule holds.
		{"projects/y/a.txt", "carol", r | l | w, ""},
		{"projects/a.txt", "carol", r | l | w, ""},
	} {
		from, _, _ := p.governing(subjects.AccessFolder(tc.name))
		got := p.rightsAt(subjects.AccessFolder(tc.name), tc.user)
		if got != tc.want || from != tc.from {
			t.Errorf("%s on %q: rights %v from %q, want %v from %q", tc.user, tc.name, got.names(), from, tc.want.names(), tc.from)
		}
	}
}

func TestAccessAdminReachesBelow(t *testing.T) {
	p := teamPolicy(t)
	for _, tc := range []struct {
		folder, user string
		want         bool
	}{
		{"", "alice", false}, // the root's rule gives no one admin
		{"home/", "alice", false},
		{"home/alice/", "alice", true},
		{"home/alice/sub/", "alice", true},
		{"home/alice/", "bob", false},
		{"projects/x/", "alice", true},
		// alice's admin at projects/x/ reaches the folders below, even
		// one whose own rule does not name her as admin.
		{"projects/x/secret/", "alice", true},
		{"projects/x/new/", "alice", true},
		{"projects/x/", "bob", false},
		{"projects/", "alice", false},
		{"home/carol/public/", "carol", true},
		{"home/carol/public/", "bob", false},
	} {
		if got := p.adminAt(tc.folder, tc.user); got != tc.want {
			t.Errorf("adminAt(%q, %s) = %v, want %v", tc.folder, tc.user, got, tc.want)
		}
	}
}

func TestAccessViewSiteAdminAndListing(t *testing.T) {
	p := teamPolicy(t)
	admin := &accessView{user: "root", siteAdmin: true, folders: map[string]rights{}}
	if admin.rights("home/alice/a.txt") != allRights || admin.visible() != nil {
		t.Error("a site admin is bound by a rule")
	}
	bob := &accessView{p: p, user: "bob", folders: map[string]rights{}}
	visible := bob.visible()
	for name, want := range map[string]bool{
		"a.txt": true, "home/alice/a.txt": false, "projects/x/a.txt": true,
		"projects/x/secret/a.txt": false, "projects/x/drop/a.txt": false, "home/carol/public/a.txt": true,
	} {
		if got := visible(name); got != want {
			t.Errorf("bob sees %q: %v, want %v", name, got, want)
		}
	}
}

func TestAccessPagesAfterTheFilter(t *testing.T) {
	var files []subjects.FileInfo
	for _, n := range []string{"a", "home/alice/1", "home/alice/2", "home/alice/3", "z"} {
		files = append(files, subjects.FileInfo{Name: n})
	}
	p := teamPolicy(t)
	bob := &accessView{p: p, user: "bob", folders: map[string]rights{}}
	first := pageVisible(subjects.ListRequest{Limit: 1}, files, bob.visible())
	if len(first.Files) != 1 || first.Files[0].Name != "a" || !first.More {
		t.Fatalf("first page = %+v, want [a] and more", first)
	}
	second := pageVisible(subjects.ListRequest{Limit: 1, After: "a"}, files, bob.visible())
	if len(second.Files) != 1 || second.Files[0].Name != "z" || second.More {
		t.Fatalf("second page = %+v, want [z] and no more", second)
	}
	last := pageVisible(subjects.ListRequest{Limit: 1, After: "a", Prefix: "home/"}, files, bob.visible())
	if len(last.Files) != 0 || last.More {
		t.Fatalf("bob's page of home/ = %+v, want nothing and no more", last)
	}
}

func TestAccessBadRecordRefuses(t *testing.T) {
	for _, raw := range []string{`{"rules":{"p":{"lines":["read: *"]}}}`, `{"rules":{"p/":{"lines":["reed: *"]}}}`, `{"rules":{"p/":{"lines":[]}}}`, `not json`} {
		if _, err := parsePolicy([]byte(raw)); err == nil {
			t.Errorf("parsePolicy(%s) accepted a record no server writes", raw)
		}
	}
}

// TestMayListAndMayRead is the contract other features (watches, share
// links) rely on: list is list or read, read is read alone, and a site
// admin passes.
func TestMayListAndMayRead(t *testing.T) {
	s := &Server{}
	p := teamPolicy(t)
	for _, tc := range []struct {
		user, name string
		list, read bool
		admin      bool
	}{
		{"bob", "projects/x/a.txt", true, true, false},
		{"carol", "projects/x/a.txt", false, false, false},
		{"carol", "projects/x/index/a.txt", true, false, false},
		{"carol", "projects/x/drop/a.txt", false, false, false}, // write alone
		{"bob", "home/alice/a.txt", false, false, false},
		{"root", "home/alice/a.txt", true, true, true},
	} {
		c := &call{user: tc.user, admin: tc.admin}
		if !tc.admin {
			c.access = &accessView{p: p, user: tc.user, folders: map[string]rights{}}
		}
		if got := s.mayList(c, tc.name); got != tc.list {
			t.Errorf("mayList(%s, %q) = %v, want %v", tc.user, tc.name, got, tc.list)
		}
		if got := s.mayRead(c, tc.name); got != tc.read {
			t.Errorf("mayRead(%s, %q) = %v, want %v", tc.user, tc.name, got, tc.read)
		}
	}
}

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// The access matrix's folders, each with the owner of the file a row acts
// on (a fixture put just for that row).
var accessFolders = []struct{ folder, owner string }{
	{"shared/", "carol"},            // the root's built-in rule
	{"home/alice/", "alice"},        // a home's built-in rule
	{"projects/x/", "bob"},          // a rule naming @eng
	{"projects/x/secret/", "alice"}, // a deeper rule replacing it
	{"projects/x/drop/", "carol"},   // write-only for everyone, set by alice
}

// The verbs of the matrix.
const (
	vPutNew  = "put new"
	vPutOver = "put over"
	vGet     = "get"
	vStat    = "stat"
	vList    = "ls"
	vRemove  = "rm"
	vMvFrom  = "mv from"
	vMvTo    = "mv to"
)

var accessVerbs = []string{vPutNew, vPutOver, vGet, vStat, vList, vRemove, vMvFrom, vMvTo}

// accessExpected is the matrix, written out by hand from the rules
// TestAccessMatrix sets: for each folder and user, the verbs allowed.
// Every verb not listed is refused.
var accessExpected = map[string]map[string][]string{
	"shared/": {
		// Everyone reads, lists and adds; only the owner changes a file.
		"alice": {vPutNew, vGet, vStat, vList, vMvTo},
		"bob":   {vPutNew, vGet, vStat, vList, vMvTo},
		"carol": accessVerbs,
	},
	"home/alice/": {
		"alice": accessVerbs,
		"bob":   nil,
		"carol": nil,
	},
	"projects/x/": {
		"alice": accessVerbs, // delete: anyone's file
		"bob":   accessVerbs, // write, and the files are his
		"carol": nil,
	},
	"projects/x/secret/": {
		"alice": accessVerbs,
		"bob":   nil, // @eng's rights above do not reach here
		"carol": nil,
	},
	"projects/x/drop/": {
		"alice": accessVerbs, // write from *, the rest her own
		"bob":   {vPutNew, vMvTo},
		"carol": {vPutNew, vPutOver, vRemove, vMvFrom, vMvTo}, // her own file, unseen
	},
}

// TestAccessMatrix runs every verb as every user on every folder's rule,
// through the primary alone and then through the backup alone, and checks
// that each is allowed or refused as accessExpected says, and that a
// refusal changed nothing. Then what an attacker with an account tries.
func TestAccessMatrix(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	admin := sys.Login(t, "admin")
	users := map[string]*client.Client{}
	for _, u := range []string{"alice", "bob", "carol"} {
		sys.AddUser(t, u)
		users[u] = sys.Login(t, u)
	}
	alice, bob, carol := users["alice"], users["bob"], users["carol"]

	if _, err := admin.AddToGroup(ctxT(t), "eng", "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	// Only an admin may set a rule at projects/x/ (the root's gives no
	// one admin); alice runs the folders below it from then on.
	if _, err := admin.SetAccess(ctxT(t), "projects/x/", "read,list,write: @eng", "delete,admin: alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SetAccess(ctxT(t), "projects/x/secret/", "read,list,write,delete: alice"); err != nil {
		t.Fatalf("alice, admin at projects/x/, sets a rule below it: %v", err)
	}
	if _, err := alice.SetAccess(ctxT(t), "projects/x/drop/", "write: *", "read,list,delete: alice"); err != nil {
		t.Fatalf("alice sets the drop folder's rule: %v", err)
	}

	for _, pass := range []struct{ serving, stopped string }{{"primary", "backup"}, {"backup", "primary"}} {
		t.Run("through the "+pass.serving, func(t *testing.T) {
			sys.Stop(t, pass.stopped)
			defer sys.Restart(t, pass.stopped)
			for i, f := range accessFolders {
				for _, user := range []string{"alice", "bob", "carol"} {
					for _, verb := range accessVerbs {
						want := slices.Contains(accessExpected[f.folder][user], verb)
						row := accessRow{t: t, sys: sys, admin: admin, users: users, folder: f.folder, owner: f.owner, user: user, verb: verb,
							tag: fmt.Sprintf("%s-%d-%s-%s", pass.serving, i, user, strings.ReplaceAll(verb, " ", ""))}
						row.run(want)
					}
				}
			}
		})
	}

	t.Run("listings show only what each user may list", func(t *testing.T) {
		for user, c := range users {
			files, err := c.List(ctxT(t), "")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				folder := subjects.AccessFolder(f.Name)
				governing := ""
				for _, af := range accessFolders {
					if strings.HasPrefix(folder, af.folder) && len(af.folder) > len(governing) {
						governing = af.folder
					}
				}
				if strings.HasPrefix(f.Name, "home/"+user+"/") {
					continue // their own home
				}
				if strings.HasPrefix(f.Name, "home/") && governing == "" {
					t.Errorf("%s's listing shows %q, in another's home", user, f.Name)
				}
				if governing != "" && !slices.Contains(accessExpected[governing][user], vList) {
					t.Errorf("%s's listing shows %q", user, f.Name)
				}
			}
		}
	})

	t.Run("a rule change takes effect on the very next request", func(t *testing.T) {
		name := "projects/x/next-request.txt"
		sys.PutRandom(t, bob, name, 10)
		if _, err := bob.Stat(ctxT(t), name); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.SetAccess(ctxT(t), "projects/x/", "read,list,write,delete,admin: alice"); err != nil {
			t.Fatal(err)
		}
		// Either server may answer; neither may use what it read before.
		for i := range 4 {
			if _, err := bob.Stat(ctxT(t), name); !errors.Is(err, client.ErrForbidden) {
				t.Fatalf("bob's stat #%d after @eng lost the folder: %v, want ErrForbidden", i, err)
			}
		}
		if files, err := bob.List(ctxT(t), "projects/x/"); err != nil || len(files) != 0 {
			t.Fatalf("bob lists projects/x/ after @eng lost it: %v, %d files", err, len(files))
		}
		if _, err := admin.SetAccess(ctxT(t), "projects/x/", "read,list,write: @eng", "delete,admin: alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Stat(ctxT(t), name); err != nil {
			t.Fatalf("bob's stat once the rule is back: %v", err)
		}
		// Groups too: out of @eng, bob loses the folder at once.
		if err := admin.RemoveFromGroup(ctxT(t), "eng", "bob"); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Stat(ctxT(t), name); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("bob's stat once out of @eng: %v, want ErrForbidden", err)
		}
		if _, err := admin.AddToGroup(ctxT(t), "eng", "bob"); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Stat(ctxT(t), name); err != nil {
			t.Fatalf("bob's stat back in @eng: %v", err)
		}
	})

	t.Run("a user removed leaves its groups: the name comes back without them", func(t *testing.T) {
		name := "projects/x/for-eng.txt"
		sys.PutRandom(t, bob, name, 10)
		sys.AddUser(t, "dave")
		if _, err := admin.AddToGroup(ctxT(t), "eng", "dave"); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.AddToGroup(ctxT(t), "ops", "dave"); err != nil {
			t.Fatal(err)
		}
		if _, err := sys.Login(t, "dave").Stat(ctxT(t), name); err != nil {
			t.Fatalf("dave in @eng: %v", err)
		}
		if err := admin.RemoveUser(ctxT(t), "dave"); err != nil {
			t.Fatal(err)
		}
		groups, err := admin.ListGroups(ctxT(t), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			if slices.Contains(g.Users, "dave") {
				t.Errorf("group %s still lists dave after his removal: %v", g.Name, g.Users)
			}
			if g.Name == "eng" && !slices.Equal(g.Users, []string{"alice", "bob"}) {
				t.Errorf("@eng after dave's removal: %v, want alice and bob", g.Users)
			}
		}
		sys.AddUser(t, "dave") // someone else, under the same name
		if _, err := sys.Login(t, "dave").Stat(ctxT(t), name); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("the new dave's stat in @eng's folder: %v, want ErrForbidden", err)
		}
	})

	t.Run("an upload is checked again at its commit", func(t *testing.T) {
		w := dialWire(t, sys, bob)
		empty := ftfstest.Digest(nil)
		commit := func(st subjects.UploadState) wireReply {
			return w.ask(t, subjects.UploadCommit, wireOwnSession, nil, fmt.Appendf(nil, `{"upload":%q,"size":0,"digest":%q}`, st.Upload, empty))
		}
		if r := commit(w.open(t, "projects/x/committed.txt", 0)); r.code != "" {
			t.Fatalf("bob's commit while he may write: %s %s", r.code, r.text)
		}
		st := w.open(t, "projects/x/refused-at-commit.txt", 0)
		if _, err := admin.SetAccess(ctxT(t), "projects/x/", "read,list: @eng", "read,list,write,delete,admin: alice"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := admin.SetAccess(ctxT(t), "projects/x/", "read,list,write: @eng", "delete,admin: alice"); err != nil {
				t.Error(err)
			}
		}()
		if r := commit(st); r.code != subjects.CodeForbidden {
			t.Fatalf("bob's commit after losing write: %q %s, want %s", r.code, r.text, subjects.CodeForbidden)
		}
		if _, err := admin.Stat(ctxT(t), "projects/x/refused-at-commit.txt"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("the refused commit's file: %v, want ErrNotFound", err)
		}
	})

	t.Run("an attacker with an account", func(t *testing.T) {
		secret := "home/alice/diary.txt"
		content := sys.PutRandom(t, alice, secret, 100)
		fi, err := alice.Stat(ctxT(t), secret)
		if err != nil {
			t.Fatal(err)
		}
		// Reading another's home, by names that exist and names guessed:
		// the same refusal, so that it tells nothing.
		for _, name := range []string{secret, "home/alice/guessed.txt"} {
			if _, err := carol.Stat(ctxT(t), name); !errors.Is(err, client.ErrForbidden) {
				t.Errorf("carol stats %s: %v, want ErrForbidden", name, err)
			}
			var buf bytes.Buffer
			if _, err := carol.Get(ctxT(t), name, &buf); !errors.Is(err, client.ErrForbidden) || buf.Len() != 0 {
				t.Errorf("carol gets %s: %v, %d bytes, want ErrForbidden and nothing", name, err, buf.Len())
			}
		}
		if files, err := carol.List(ctxT(t), "home/alice/"); err != nil || len(files) != 0 {
			t.Errorf("carol lists alice's home: %v, %v", err, files)
		}
		w := dialWire(t, sys, carol)
		dl := fmt.Appendf(nil, `{"name":%q,"version":%q,"after":0,"max":1}`, secret, fi.Version)
		for _, ask := range []struct {
			subject string
			body    []byte
		}{
			{subjects.Download, dl},
			{subjects.Download, fmt.Appendf(nil, `{"name":"home/alice/guessed.txt","version":"x","after":0,"max":1}`)},
			{subjects.ReplicaDownload, dl},
			{subjects.ReplicaStat, fmt.Appendf(nil, `{"name":%q}`, secret)},
			{subjects.Get, fmt.Appendf(nil, `{"name":%q}`, secret)},
		} {
			if r := w.ask(t, ask.subject, wireOwnSession, nil, ask.body); r.code != subjects.CodeForbidden || bytes.Contains(r.data, content[:16]) {
				t.Errorf("carol asks %s %s: %q %s, want %s", wireShort(ask.subject), ask.body, r.code, r.text, subjects.CodeForbidden)
			}
		}
		r := w.ask(t, subjects.ReplicaList, wireOwnSession, nil, []byte(`{"prefix":"home/"}`))
		if r.code != "" || strings.Contains(string(r.data), "home/alice/") {
			t.Errorf("carol lists the replica's home/: %q %s %s", r.code, r.text, r.data)
		}
		// Rules and groups that are not hers.
		for _, prefix := range []string{"home/alice/", "home/", "", "projects/x/", "projects/x/drop/"} {
			if _, err := carol.SetAccess(ctxT(t), prefix, "read,list,write,delete,admin: carol"); !errors.Is(err, client.ErrForbidden) {
				t.Errorf("carol sets the rule of %q: %v, want ErrForbidden", prefix, err)
			}
		}
		if err := alice.RemoveAccess(ctxT(t), "projects/x/drop/"); err != nil {
			t.Fatalf("alice removes a rule below her folder: %v", err)
		}
		if err := carol.RemoveAccess(ctxT(t), "projects/x/"); !errors.Is(err, client.ErrForbidden) {
			t.Errorf("carol removes the rule of projects/x/: %v, want ErrForbidden", err)
		}
		if _, err := carol.AddToGroup(ctxT(t), "eng", "carol"); !errors.Is(err, client.ErrForbidden) {
			t.Errorf("carol adds herself to @eng: %v, want ErrForbidden", err)
		}
		if err := carol.RemoveFromGroup(ctxT(t), "eng", "bob"); !errors.Is(err, client.ErrForbidden) {
			t.Errorf("carol removes bob from @eng: %v, want ErrForbidden", err)
		}
		if _, err := carol.ShowAccess(ctxT(t), secret); !errors.Is(err, client.ErrForbidden) {
			t.Errorf("carol shows the rule of alice's home: %v, want ErrForbidden", err)
		}
		if _, err := carol.ListGroups(ctxT(t), "eng"); !errors.Is(err, client.ErrForbidden) {
			t.Errorf("carol lists @eng: %v, want ErrForbidden", err)
		}
		if rules, err := carol.ListAccess(ctxT(t)); err != nil || len(rules) != 0 {
			t.Errorf("carol lists the rules: %v, %v; want none of them", err, rules)
		}
		// Nothing of hers got through.
		if g, err := admin.ListGroups(ctxT(t), "eng"); err != nil || len(g) != 1 || !slices.Equal(g[0].Users, []string{"alice", "bob"}) {
			t.Errorf("@eng after carol's tries: %v %v", g, err)
		}
		show, err := admin.ShowAccess(ctxT(t), "home/alice/x")
		if err != nil || !show.Rule.Builtin || show.Rule.Prefix != "home/alice/" {
			t.Errorf("alice's home after carol's tries: %+v %v", show, err)
		}
		// Her own home she runs, but she cannot lock herself out of it.
		if _, err := carol.SetAccess(ctxT(t), "home/carol/", "read,list: *"); !errors.Is(err, client.ErrForbidden) {
			t.Errorf("carol drops her own admin right: %v, want ErrForbidden", err)
		}
		if _, err := carol.SetAccess(ctxT(t), "home/carol/", "read,list: *", "write,delete,admin: carol"); err != nil {
			t.Errorf("carol opens her home for reading: %v", err)
		}
		sys.PutRandom(t, carol, "home/carol/open.txt", 10)
		if _, err := bob.Stat(ctxT(t), "home/carol/open.txt"); err != nil {
			t.Errorf("bob stats carol's opened home: %v", err)
		}
		if _, err := bob.Put(ctxT(t), "home/carol/bobs.txt", strings.NewReader("x"), 1); !errors.Is(err, client.ErrForbidden) {
			t.Errorf("bob writes into carol's home opened for reading: %v, want ErrForbidden", err)
		}
	})

	t.Run("bad rules and groups are refused with the reason", func(t *testing.T) {
		w := dialWire(t, sys, admin)
		for _, tc := range []struct {
			subject, body string
			reason        subjects.Reason
		}{
			{subjects.AccessSet, `{"prefix":"p","lines":["read: *"]}`, subjects.ReasonAccessPrefix},
			{subjects.AccessSet, `{"prefix":"p/","lines":[]}`, subjects.ReasonAccessEmpty},
			{subjects.AccessSet, `{"prefix":"p/","lines":["reed: *"]}`, subjects.ReasonAccessRight},
			{subjects.AccessSet, `{"prefix":"p/","lines":["read *"]}`, subjects.ReasonAccessSyntax},
			{subjects.AccessSet, `{"prefix":"p/","lines":["read: Bob"]}`, subjects.ReasonAccessMember},
			{subjects.AccessSet, `{"prefix":"p/","lines":["read: nosuchuser"]}`, subjects.ReasonAccessMember},
			{subjects.AccessSet, `{"prefix":"p/","lines":["read: @nosuchgroup"]}`, subjects.ReasonAccessMember},
			{subjects.AccessSet, `{"prefix":"p/","lines":["read: *"],"admin":true}`, subjects.ReasonUnknownField},
			{subjects.GroupAdd, `{"group":"@eng","users":["alice"]}`, subjects.ReasonGroupName},
			{subjects.GroupAdd, `{"group":"ops"}`, subjects.ReasonMissingField},
		} {
			r := w.ask(t, tc.subject, wireOwnSession, nil, []byte(tc.body))
			if r.code != subjects.CodeInvalid || r.reason != tc.reason {
				t.Errorf("%s %s: %q %q %s, want %s %s", wireShort(tc.subject), tc.body, r.code, r.reason, r.text, subjects.CodeInvalid, tc.reason)
			}
		}
		if _, err := admin.AddToGroup(ctxT(t), "ops", "nosuchuser"); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("a group of a user who does not exist: %v, want ErrNotFound", err)
		}
		if rules, err := admin.ListAccess(ctxT(t)); err != nil || slices.ContainsFunc(rules, func(r client.AccessRule) bool { return r.Prefix == "p/" }) {
			t.Errorf("the refused rules left %v (%v)", rules, err)
		}
	})

	t.Run("garbage at the access and group endpoints changes nothing", func(t *testing.T) {
		rulesBefore, err := admin.ListAccess(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		groupsBefore, err := admin.ListGroups(ctxT(t), "")
		if err != nil {
			t.Fatal(err)
		}
		a := dialWire(t, sys, admin)
		var cases []wireCase
		for _, e := range []wireEndpoint{
			{subjects.AccessSet, a, `{"prefix":"junk/","lines":["read: *"]}`, false},
			{subjects.AccessRemove, a, `{"prefix":"projects/x/"}`, false},
			{subjects.AccessShow, a, `{"path":"projects/x/a.txt"}`, false},
			{subjects.AccessList, a, `{}`, false},
			{subjects.GroupAdd, a, `{"group":"junk","users":["carol"]}`, false},
			{subjects.GroupRemove, a, `{"group":"eng"}`, false},
			{subjects.GroupList, a, `{"group":"eng"}`, false},
		} {
			cases = append(cases, e.malformed()...)
		}
		for _, c := range cases {
			c.run(t)
		}
		rulesAfter, err := admin.ListAccess(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		groupsAfter, err := admin.ListGroups(ctxT(t), "")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(rulesBefore) != fmt.Sprint(rulesAfter) || fmt.Sprint(groupsBefore) != fmt.Sprint(groupsAfter) {
			t.Errorf("garbage changed the rules or groups:\n%v %v\n%v %v", rulesBefore, groupsBefore, rulesAfter, groupsAfter)
		}
	})

	t.Run("the command line", func(t *testing.T) {
		cli := sys.AdminCLI(t)
		if out, stderr, code := cli.Run(t, nil, nil, "group", "add", "ops", "carol"); code != 0 || !strings.Contains(out, "group ops: carol") {
			t.Fatalf("ftfs group add: exit %d: %s%s", code, out, stderr)
		}
		if out, stderr, code := cli.Run(t, nil, nil, "access", "set", "ops", "read,list,write: @ops", "delete,admin: carol"); code != 0 || !strings.Contains(out, "read,list,write: @ops") {
			t.Fatalf("ftfs access set: exit %d: %s%s", code, out, stderr)
		}
		out, stderr, code := cli.Run(t, nil, nil, "access", "show", "ops/deep/file.txt")
		if code != 0 || !strings.Contains(out, "rule of ops/") || !strings.Contains(out, "you may: read,list,write,delete,admin (site admin)") {
			t.Fatalf("ftfs access show: exit %d: %s%s", code, out, stderr)
		}
		if out, stderr, code := cli.Run(t, nil, nil, "access", "ls"); code != 0 || !strings.Contains(out, "ops/") || !strings.Contains(out, "projects/x/") {
			t.Fatalf("ftfs access ls: exit %d: %s%s", code, out, stderr)
		}
		if _, stderr, code := cli.Run(t, nil, nil, "access", "set", "ops/", "reed: *"); code == 0 || !strings.Contains(stderr, `unknown right "reed"`) {
			t.Fatalf("ftfs access set with a bad right: exit %d: %s", code, stderr)
		}
		if _, stderr, code := cli.Run(t, nil, nil, "access", "rm", "ops/"); code != 0 {
			t.Fatalf("ftfs access rm: exit %d: %s", code, stderr)
		}
		if out, stderr, code := cli.Run(t, nil, nil, "group", "rm", "ops"); code != 0 || !strings.Contains(out, "removed group ops") {
			t.Fatalf("ftfs group rm: exit %d: %s%s", code, out, stderr)
		}
		if out, _, _ := cli.Run(t, nil, nil, "group", "ls"); strings.Contains(out, "ops") {
			t.Fatalf("ftfs group ls after rm: %s", out)
		}
	})
}

// accessRow is one row of the matrix: user does verb to a file of owner
// in folder.
type accessRow struct {
	t                         *testing.T
	sys                       *ftfstest.System
	admin                     *client.Client
	users                     map[string]*client.Client
	folder, owner, user, verb string
	tag                       string // unique to the row
}

func (r accessRow) run(want bool) {
	t := r.t
	t.Helper()
	c := r.users[r.user]
	fixture := r.folder + "f-" + r.tag
	fresh := r.folder + "n-" + r.tag
	own := "home/" + r.user + "/src-" + r.tag
	away := "home/" + r.user + "/moved-" + r.tag
	var seeded []byte
	switch r.verb {
	case vPutNew:
	case vMvTo:
		r.sys.PutRandom(t, c, own, 10)
	default:
		seeded = r.sys.PutRandom(t, r.users[r.owner], fixture, 10)
	}
	var err error
	switch r.verb {
	case vPutNew:
		_, err = c.Put(ctxT(t), fresh, strings.NewReader("new"), 3)
	case vPutOver:
		_, err = c.Put(ctxT(t), fixture, strings.NewReader("over"), 4)
	case vGet:
		var buf bytes.Buffer
		if _, err = c.Get(ctxT(t), fixture, &buf); err == nil && !bytes.Equal(buf.Bytes(), seeded) {
			t.Errorf("%s: got other bytes than stored", r.label())
		}
	case vStat:
		_, err = c.Stat(ctxT(t), fixture)
	case vList:
		var files []client.FileInfo
		files, err = c.List(ctxT(t), r.folder)
		if err == nil && !slices.ContainsFunc(files, func(f client.FileInfo) bool { return f.Name == fixture }) {
			err = client.ErrForbidden // not shown: the listing refused it
		}
	case vRemove:
		err = c.Delete(ctxT(t), fixture)
	case vMvFrom:
		_, err = c.Rename(ctxT(t), fixture, away, false)
	case vMvTo:
		_, err = c.Rename(ctxT(t), own, fresh, false)
	}
	switch {
	case want && err != nil:
		t.Errorf("%s: %v, want allowed", r.label(), err)
	case !want && !errors.Is(err, client.ErrForbidden):
		t.Errorf("%s: %v, want ErrForbidden", r.label(), err)
	case !want:
		r.unchanged(fixture, fresh, own, away, seeded)
	}
}

func (r accessRow) label() string {
	return fmt.Sprintf("%s %s %s's file in %s", r.user, r.verb, r.owner, r.folder)
}

// unchanged checks, as the admin, that a refused row changed nothing.
func (r accessRow) unchanged(fixture, fresh, own, away string, seeded []byte) {
	t := r.t
	t.Helper()
	gone := func(name string) {
		t.Helper()
		if _, err := r.admin.Stat(ctxT(t), name); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("%s, refused, left %s: %v", r.label(), name, err)
		}
	}
	switch r.verb {
	case vPutNew:
		gone(fresh)
	case vMvTo:
		gone(fresh)
		if _, err := r.admin.Stat(ctxT(t), own); err != nil {
			t.Errorf("%s, refused, lost its source: %v", r.label(), err)
		}
	default:
		fi, err := r.admin.Stat(ctxT(t), fixture)
		if err != nil || fi.Digest != ftfstest.Digest(seeded) || fi.Owner != r.owner {
			t.Errorf("%s, refused, changed the file: %+v %v", r.label(), fi, err)
		}
		if r.verb == vMvFrom {
			gone(away)
		}
	}
}

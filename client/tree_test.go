package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/fileserver"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

func TestTreeName(t *testing.T) {
	for _, tc := range []struct{ prefix, rel, want string }{
		{"photos", "a.jpg", "photos/a.jpg"},
		{"photos/", "2026/a.jpg", "photos/2026/a.jpg"},
		{"photos//", "a.jpg", "photos/a.jpg"},
		{"", "a/b.txt", "a/b.txt"},
		{"/", "a", "a"},
	} {
		if got := client.TreeName(tc.prefix, tc.rel); got != tc.want {
			t.Errorf("TreeName(%q, %q) = %q, want %q", tc.prefix, tc.rel, got, tc.want)
		}
	}
}

// writeTree writes files (path -> content) below a new temporary dir.
func writeTree(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	ftfstest.WriteFiles(t, dir, files)
	return dir
}

// TestPutTreeUploadsEveryRegularFile puts a tree of small, empty and
// large files with a symbolic link and a named pipe in it: every regular
// file arrives under the prefix, the others are ignored; with TreeUpdate a
// second put sends only the file that changed, and with TreeNoOverwrite
// nothing.
func TestPutTreeUploadsEveryRegularFile(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary, fileserver.RoleBackup)
	c := sys.login(t, fileserver.AdminUser, adminPassword)
	ctx := context.Background()
	files := map[string][]byte{
		"a.txt":             []byte("alpha"),
		"empty":             {},
		".hidden":           []byte("dot files go too"),
		"sub/b.bin":         randomBytes(subjects.MaxPutSize),
		"sub/deeper/c.bin":  randomBytes(3*subjects.ChunkSize + 7), // an upload
		"sub/deeper/d.txt":  []byte("delta"),
		"other/naïve é.txt": []byte("unicode names are names"),
	}
	dir := writeTree(t, files)
	if err := os.Symlink(filepath.Join(dir, "a.txt"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "sub", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range files {
		total += int64(len(b))
	}

	var mu sync.Mutex
	var last client.TreeProgress
	seen := map[string]client.TreeState{}
	res, err := c.PutTree(ctx, os.DirFS(dir), "tree", client.TreeJobs(3),
		client.OnTreeProgress(func(p client.TreeProgress) { mu.Lock(); last = p; mu.Unlock() }),
		client.OnTreeFile(func(f client.TreeFile) { mu.Lock(); seen[f.Path] = f.State; mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != len(files) || res.Bytes != total || len(res.Failed) != 0 || res.NotSent != 0 {
		t.Fatalf("result %+v, want %d files (%d bytes) uploaded", res, len(files), total)
	}
	if len(res.Ignored) != 2 || res.Ignored[0].Path != "link" || res.Ignored[1].Path != "sub/fifo" ||
		!strings.Contains(res.Ignored[0].Reason, "symbolic link") || res.Ignored[1].Reason != "named pipe" {
		t.Fatalf("ignored %+v, want the link and the pipe", res.Ignored)
	}
	if last.Files != len(files) || last.FilesTotal != len(files) || last.Bytes != total || last.BytesTotal != total {
		t.Fatalf("last progress %+v, want %d files and %d bytes done of as many", last, len(files), total)
	}
	if len(seen) != len(files)+2 || seen["link"] != client.TreeIgnored || seen["a.txt"] != client.TreeUploaded {
		t.Fatalf("files reported: %v", seen)
	}
	for p, want := range files {
		var got bytes.Buffer
		if _, err := c.Get(ctx, "tree/"+p, &got); err != nil {
			t.Fatalf("get %s: %v", p, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("%s: %d bytes back, want %d", p, got.Len(), len(want))
		}
	}
	listed, err := c.List(ctx, "tree/")
	if err != nil || len(listed) != len(files) {
		t.Fatalf("listed %d files (%v), want %d", len(listed), err, len(files))
	}

	// One file changes (same size), one is new: --update sends those two.
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("ALPHA"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new.txt"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := c.Stat(ctx, "tree/sub/deeper/c.bin")
	res, err = c.PutTree(ctx, os.DirFS(dir), "tree/", client.TreeUpdate())
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 2 || res.Unchanged != len(files)-1 {
		t.Fatalf("update: %+v, want 2 uploaded and %d unchanged", res, len(files)-1)
	}
	if after, _ := c.Stat(ctx, "tree/sub/deeper/c.bin"); after.Version != before.Version {
		t.Fatalf("update replaced an unchanged file: version %s, was %s", after.Version, before.Version)
	}
	var got bytes.Buffer
	if _, err := c.Get(ctx, "tree/a.txt", &got); err != nil || got.String() != "ALPHA" {
		t.Fatalf("changed file: %q, %v", got.String(), err)
	}

	res, err = c.PutTree(ctx, os.DirFS(dir), "tree", client.TreeNoOverwrite())
	if err != nil || res.Existing != len(files)+1 || res.Uploaded != 0 {
		t.Fatalf("no overwrite: %+v, %v; want every file existing", res, err)
	}
}

// TestPutTreeWithAnInvalidNameSendsNothing: a tree holding a name ftfs
// cannot store is refused whole, naming it, before anything is sent.
func TestPutTreeWithAnInvalidNameSendsNothing(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	c := sys.login(t, fileserver.AdminUser, adminPassword)
	ctx := context.Background()
	fsys := fstest.MapFS{
		"ok.txt":       {Data: []byte("fine")},
		`back\slash`:   {Data: []byte("no")},
		"ctl\x01x.txt": {Data: []byte("no")},
	}
	_, err := c.PutTree(ctx, fsys, "t")
	if !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), `back\\slash`) || !strings.Contains(err.Error(), "2 local file names") {
		t.Fatalf("err = %v, want ErrInvalid naming both", err)
	}
	if _, err := c.PutTree(ctx, fstest.MapFS{"a": {Data: []byte("a")}}, "../up"); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("bad prefix: %v", err)
	}
	if files, err := c.List(ctx, ""); err != nil || len(files) != 0 {
		t.Fatalf("listed %v (%v) after refused trees, want nothing", files, err)
	}
}

// TestPutTreeGoesOnPastAFailedFile: a file the user may not replace (an
// admin's) fails; every other file is uploaded, and the error names it.
func TestPutTreeGoesOnPastAFailedFile(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	admin := sys.login(t, fileserver.AdminUser, adminPassword)
	ctx := context.Background()
	if err := admin.AddUser(ctx, "alice", "alice-password", false); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, "t/m/taken.txt", strings.NewReader("admin's"), 7); err != nil {
		t.Fatal(err)
	}
	alice := sys.login(t, "alice", "alice-password")
	fsys := fstest.MapFS{}
	for i := range 20 {
		fsys[fmt.Sprintf("f%02d.txt", i)] = &fstest.MapFile{Data: []byte{byte(i)}}
	}
	fsys["m/taken.txt"] = &fstest.MapFile{Data: []byte("alice's")}
	res, err := alice.PutTree(ctx, fsys, "t")
	if !errors.Is(err, client.ErrForbidden) || !strings.Contains(err.Error(), "m/taken.txt") {
		t.Fatalf("err = %v, want ErrForbidden naming m/taken.txt", err)
	}
	if res.Uploaded != 20 || len(res.Failed) != 1 || res.Failed[0].Name != "t/m/taken.txt" {
		t.Fatalf("result %+v, want 20 uploaded and taken.txt failed", res)
	}
}

// TestPutTreeStopsWhenCancelled: a cancelled context stops the tree; the
// files never started are counted as not sent.
func TestPutTreeStopsWhenCancelled(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	c := sys.login(t, fileserver.AdminUser, adminPassword)
	fsys := fstest.MapFS{}
	for i := range 200 {
		fsys[fmt.Sprintf("f%03d", i)] = &fstest.MapFile{Data: []byte("x")}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	res, err := c.PutTree(ctx, fsys, "c", client.TreeJobs(2), client.OnTreeFile(func(client.TreeFile) { once.Do(cancel) }))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if res.NotSent == 0 || res.Uploaded+len(res.Failed)+res.NotSent != 200 {
		t.Fatalf("result: %d uploaded, %d failed, %d not sent; want them to add up to 200, some not sent", res.Uploaded, len(res.Failed), res.NotSent)
	}
	for _, f := range res.Failed {
		// In flight when cancelled: the interruption, whatever the put said.
		if !errors.Is(f.Err, context.Canceled) {
			t.Errorf("%s failed with %v, want context.Canceled", f.Path, f.Err)
		}
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if files, err := c.List(ctx2, "c/"); err != nil || len(files) >= 200 {
		t.Fatalf("listed %d files (%v) after a cancelled tree", len(files), err)
	}
}

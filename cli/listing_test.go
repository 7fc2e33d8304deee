package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"text/tabwriter"
	"time"

	"github.com/ftfs/ftfs/broker"
	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/fileserver"
	"github.com/ftfs/ftfs/internal/bytesize"
	"github.com/ftfs/ftfs/subjects"
)

// someFiles makes n files named prefix0000, prefix0001, ...
func someFiles(prefix string, n int) []client.FileInfo {
	files := make([]client.FileInfo, n)
	for i := range files {
		files[i] = client.FileInfo{Name: fmt.Sprintf("%s%04d", prefix, i), Size: int64(i * 100), Owner: "alice",
			Modified: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Digest: "SHA-256=x", Version: "v", Chunks: 1}
	}
	return files
}

// TestFileTableLinesUpAcrossPages: a page alone is laid out as the
// tabwriter of old laid out the whole listing, and a later page keeps the
// columns of earlier ones, widening them only for a wider cell.
func TestFileTableLinesUpAcrossPages(t *testing.T) {
	for _, long := range []bool{false, true} {
		page := someFiles("photos/2026/", 3)
		page[1].Name = "a/much/longer/name.jpg"
		page[2].Pending = true
		var old bytes.Buffer
		tw := tabwriter.NewWriter(&old, 0, 4, 2, ' ', 0)
		if long {
			fmt.Fprintln(tw, "NAME\tSIZE\tMODIFIED\tOWNER\tDIGEST")
		} else {
			fmt.Fprintln(tw, "NAME\tSIZE\tMODIFIED\tOWNER")
		}
		for _, f := range page {
			line := fmt.Sprintf("%s\t%s\t%s\t%s", f.Name, bytesize.Human(f.Size), f.Modified.Local().Format(time.DateTime), f.Owner)
			if long {
				line += "\t" + f.Digest
			}
			if f.Pending {
				line += "\t(pending: not yet copied into the replica)"
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()

		var got bytes.Buffer
		ft := newFileTable(&got, long)
		if err := ft.page(page); err != nil {
			t.Fatal(err)
		}
		if got.String() != old.String() {
			t.Fatalf("long %v: one page\n%s\nwant the tabwriter's\n%s", long, got.String(), old.String())
		}

		// A page of shorter names keeps the columns; a wider one widens.
		got.Reset()
		if err := ft.page(someFiles("b", 2)); err != nil {
			t.Fatal(err)
		}
		sizeAt := strings.Index(old.String(), "SIZE")
		for _, line := range strings.Split(strings.TrimSuffix(got.String(), "\n"), "\n") {
			if !strings.HasPrefix(line[sizeAt:], "0 B") && !strings.HasPrefix(line[sizeAt:], "100 B") {
				t.Fatalf("long %v: second page's size not in the column at %d: %q", long, sizeAt, line)
			}
		}
		got.Reset()
		wide := someFiles("a-name-wider-than-any-before/", 1)
		if err := ft.page(wide); err != nil {
			t.Fatal(err)
		}
		if want := wide[0].Name + "  0 B"; !strings.HasPrefix(got.String(), want) {
			t.Fatalf("long %v: a wider name: %q, want it to start %q", long, got.String(), want)
		}
		got.Reset()
		if err := ft.end(); err != nil || got.Len() != 0 {
			t.Fatalf("end after the pages: %v, printed %q", err, got.String())
		}
	}
}

// TestJSONListIsPrintJSONOfTheWholeListing: ls --json printed page by page
// is byte for byte what printJSON printed of the whole listing at once,
// for an empty listing, one file, and pages of every size.
func TestJSONListIsPrintJSONOfTheWholeListing(t *testing.T) {
	for _, pages := range [][]int{{0}, {1}, {2}, {1000, 1000, 3}, {1000, 0}} {
		var all []client.FileInfo
		var got bytes.Buffer
		j := &jsonList{w: &got}
		for _, n := range pages {
			page := someFiles(fmt.Sprintf("p%d/", len(all)), n)
			all = append(all, page...)
			if err := j.page(page); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.end(); err != nil {
			t.Fatal(err)
		}
		if all == nil {
			all = []client.FileInfo{}
		}
		var want bytes.Buffer
		if err := printJSON(&want, all); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("pages %v: printed\n%.400s\nwant\n%.400s", pages, got.String(), want.String())
		}
	}
	// A file served from a replica carries its lag, nested.
	var got bytes.Buffer
	j := &jsonList{w: &got}
	f := someFiles("r/", 1)
	f[0].Replica = &client.ReplicaLag{AsOf: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Pending: 1}
	f[0].Pending = true
	_ = j.page(f)
	_ = j.end()
	var want bytes.Buffer
	_ = printJSON(&want, f)
	if got.String() != want.String() {
		t.Fatalf("a replica's file: printed\n%s\nwant\n%s", got.String(), want.String())
	}
}

const (
	lsServicePassword = "cli-test-service"
	lsAdminPassword   = "cli-test-admin"
)

// startSystem runs a broker and a primary file server in this process and
// returns the broker's URL.
func startSystem(t *testing.T) string {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	b, err := broker.Start(broker.Config{Port: -1, HTTPPort: -1, DataDir: t.TempDir(), ServicePassword: lsServicePassword, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := fileserver.Start(ctx, fileserver.Config{Servers: []string{b.ClientURL()}, ServicePassword: lsServicePassword, AdminPassword: lsAdminPassword, Role: fileserver.RolePrimary, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return b.ClientURL()
}

// manyFiles starts a system, logs the CLI in as the admin (a session in
// a config dir of the test's own) and stores n files of one byte each,
// named many/0000, many/0001, ... (returned in order), with "a" and "z"
// beside them, before and after the prefix. It returns a client of the
// admin.
func manyFiles(t *testing.T, n int) (*client.Client, []string) {
	t.Helper()
	url := startSystem(t)
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("NATS_URL", url)
	t.Setenv(subjects.EnvUserPassword, lsAdminPassword)
	if _, stderr, code := run(t, "login", fileserver.AdminUser); code != 0 {
		t.Fatalf("login: exit %d: %s", code, stderr)
	}
	fsys := fstest.MapFS{}
	var names []string
	for i := range n {
		rel := fmt.Sprintf("%04d", i)
		fsys[rel] = &fstest.MapFile{Data: []byte(rel[3:]), Mode: 0o644}
		names = append(names, "many/"+rel)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, []string{url}, client.Credentials{User: fileserver.AdminUser, Password: lsAdminPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := c.PutTree(ctx, fs.FS(fsys), "many"); err != nil || res.Uploaded != n {
		t.Fatalf("put %d files: %+v, %v", n, res, err)
	}
	for _, name := range []string{"a", "z"} {
		if _, err := c.Put(ctx, name, strings.NewReader(name), 1); err != nil {
			t.Fatal(err)
		}
	}
	return c, names
}

// TestLsPrintsEveryPage lists more files than a page holds through `ftfs
// ls` and `ftfs ls --json` against a real broker and file server: every
// name once, in order, and JSON that parses and is what printJSON made of
// the whole listing before ls printed it page by page.
func TestLsPrintsEveryPage(t *testing.T) {
	const n = 2*subjects.MaxListPage + 100
	c, names := manyFiles(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	out, stderr, code := run(t, "ls", "many/")
	if code != 0 || stderr != "" {
		t.Fatalf("ls: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n+1 || !strings.HasPrefix(lines[0], "NAME ") {
		t.Fatalf("ls printed %d lines starting %q, want a header and %d files", len(lines), lines[0], n)
	}
	sizeAt := strings.Index(lines[0], "SIZE")
	for i, line := range lines[1:] {
		if name := strings.Fields(line)[0]; name != names[i] {
			t.Fatalf("ls line %d names %q, want %q", i+1, name, names[i])
		}
		if !strings.HasPrefix(line[sizeAt:], "1 B ") {
			t.Fatalf("ls line %d: size not below SIZE: %q", i+1, line)
		}
	}

	out, stderr, code = run(t, "ls", "many/", "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("ls --json: exit %d: %s", code, stderr)
	}
	var files []client.FileInfo
	if err := json.Unmarshal([]byte(out), &files); err != nil {
		t.Fatalf("ls --json does not parse: %v", err)
	}
	if len(files) != n {
		t.Fatalf("ls --json: %d files, want %d", len(files), n)
	}
	for i, f := range files {
		if f.Name != names[i] || f.Size != 1 || f.Owner != fileserver.AdminUser {
			t.Fatalf("ls --json file %d: %+v, want %s", i, f, names[i])
		}
	}
	all, err := c.List(ctx, "many/")
	if err != nil {
		t.Fatal(err)
	}
	var whole bytes.Buffer
	if err := printJSON(&whole, all); err != nil {
		t.Fatal(err)
	}
	if out != whole.String() {
		t.Fatal("ls --json differs from printJSON of the whole listing")
	}

	// An empty listing: the header alone, and an empty array.
	if out, stderr, code := run(t, "ls", "none/"); code != 0 || strings.TrimSpace(out) != "NAME  SIZE  MODIFIED  OWNER" {
		t.Fatalf("empty ls: exit %d, %q %s", code, out, stderr)
	}
	if out, stderr, code := run(t, "ls", "none/", "--json"); code != 0 || out != "[]\n" {
		t.Fatalf("empty ls --json: exit %d, %q %s", code, out, stderr)
	}
}

// TestGetTreeDownloadsEveryPage: get -r, which downloads the files of a
// page before it asks for the next, downloads every file of a prefix
// more than a page holds; a prefix without files is an error, and makes
// no directory.
func TestGetTreeDownloadsEveryPage(t *testing.T) {
	_, names := manyFiles(t, subjects.MaxListPage+1) // a download takes a fsync
	dir := filepath.Join(t.TempDir(), "into")
	out, stderr, code := run(t, "get", "-r", "many", dir)
	if code != 0 || strings.Count(out, "downloaded ") != len(names) {
		t.Fatalf("get -r: exit %d, %d files downloaded, want %d: %s", code, strings.Count(out, "downloaded "), len(names), stderr)
	}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil || string(b) != name[len(name)-1:] {
			t.Fatalf("%s: %q, %v", name, b, err)
		}
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "many")); err != nil || len(entries) != len(names) {
		t.Fatalf("%d entries below the directory, %v; want %d", len(entries), err, len(names))
	}

	empty := filepath.Join(t.TempDir(), "empty")
	if _, stderr, code := run(t, "get", "-r", "none/", empty); code != 1 || !strings.Contains(stderr, "no file has that prefix") {
		t.Fatalf("get -r of no file: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(empty); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("get -r of no file made its directory: %v", err)
	}
}

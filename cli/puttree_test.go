package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPutTreePrefixRoundTripsWithGetTree: the default prefix of put -r is
// the directory's base name, and get -r of that prefix lands the files
// back under a directory of that name.
func TestPutTreePrefixRoundTripsWithGetTree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "photos")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		args []string
		want string
	}{
		{dir, []string{dir}, "photos"},
		{dir + "/", []string{dir + "/"}, "photos"},
		{dir + "/.", []string{dir + "/."}, "photos"},
		{dir, []string{dir, "pics/2026"}, "pics/2026"},
		{dir, []string{dir, ""}, ""},
	} {
		got, err := treePrefix(tc.dir, tc.args)
		if err != nil || got != tc.want {
			t.Errorf("treePrefix(%q, %q) = %q, %v; want %q", tc.dir, tc.args, got, err, tc.want)
		}
	}
	if _, err := treePrefix("/", []string{"/"}); err == nil {
		t.Error("the root directory has no base name, yet got a prefix")
	}
	// get -r photos puts photos/2026/a.jpg at photos/2026/a.jpg below LOCAL.
	rel, err := treePath("photos", "photos/2026/a.jpg")
	if err != nil || filepath.ToSlash(rel) != "photos/2026/a.jpg" {
		t.Fatalf("treePath = %q, %v", rel, err)
	}
}

// TestPutTreeRefusesBadInputBeforeConnecting: usage mistakes and a missing
// directory are told at once, without a session or a server.
func TestPutTreeRefusesBadInputBeforeConnecting(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // no session: reaching the dial would say "login"
	file := filepath.Join(t.TempDir(), "f.txt")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"put", "-r", file}, 2, "is not a directory"},
		{[]string{"put", "-r", "-"}, 2, "not stdin"},
		{[]string{"put", "-r", "-j", "0", t.TempDir()}, 2, "--jobs"},
		{[]string{"put", "--update", file}, 2, "go with -r"},
		{[]string{"put", "-r", filepath.Join(t.TempDir(), "missing")}, 1, "no such file or directory"},
		{[]string{"put", filepath.Dir(file)}, 1, "login"}, // a directory without -r: the dial comes first, as before
	} {
		_, stderr, code := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d saying %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

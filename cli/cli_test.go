package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
)

func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func TestEveryVerbHasHelp(t *testing.T) {
	for _, verb := range []string{"broker", "primary", "backup", "restore", "login", "logout", "whoami", "ls", "put", "get", "stat", "rm", "mv", "watch", "status", "user", "user add", "user rm", "user revoke", "user passwd", "user ls", "version"} {
		out, stderr, code := run(t, append(strings.Fields(verb), "--help")...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%s --help: exit %d, %q %q", verb, code, out, stderr)
		}
	}
}

func TestVersionNamesFTFSAndNATS(t *testing.T) {
	out, stderr, code := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "ftfs 0.") || !strings.Contains(out, "nats-server 2.") {
		t.Fatalf("version: exit %d, %q %q", code, out, stderr)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"nosuchverb"}, {"get"}, {"mv", "a"}, {"ls", "--nosuchflag"}, {"stat", "a", "b"}, {"watch", "a", "b"}} {
		_, stderr, code := run(t, args...)
		if code != 2 || !strings.HasPrefix(stderr, "ftfs: ") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestVerbsNeedALogin(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	_, stderr, code := run(t, "ls")
	if code != 1 || !strings.Contains(stderr, "ftfs login") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestServersNeedTheServicePassword(t *testing.T) {
	t.Setenv("FTFS_SERVICE_PASSWORD", "")
	for _, role := range []string{"broker", "primary", "backup", "restore"} {
		_, stderr, code := run(t, role)
		if code != 1 || !strings.Contains(stderr, "FTFS_SERVICE_PASSWORD") {
			t.Errorf("%s: exit %d, stderr %q", role, code, stderr)
		}
	}
}

func TestSessionFileIsPrivate(t *testing.T) {
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home)
	want := savedSession{User: "alice", Token: "tok", Expires: time.Now().Add(time.Hour).UTC().Round(time.Second), Servers: []string{"nats://x:4222"}}
	if err := saveSession(want); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(home, "ftfs", "session.json")
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v mode %v", err, st.Mode())
	}
	if dst, _ := os.Stat(filepath.Dir(p)); dst.Mode().Perm() != 0o700 {
		t.Fatalf("session dir mode %v", dst.Mode())
	}
	got, err := loadSession()
	if err != nil || got.User != want.User || got.Token != want.Token || !got.Expires.Equal(want.Expires) {
		t.Fatalf("load: %v %+v", err, got)
	}
	want.Expires = time.Now().Add(-time.Minute)
	_ = saveSession(want)
	if _, err := loadSession(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired session: %v", err)
	}
}

func TestDownloadsStayInTheChosenDirectory(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ remote, local, want string }{
		{"a.txt", "", "a.txt"},
		{"photos/2026/a.jpg", "", "a.jpg"},
		{"../../etc/passwd", "", "passwd"},
		{"/etc/passwd", "", "passwd"},
		{`..\..\x`, "", "x"},
		{"photos/a.jpg", dir, filepath.Join(dir, "a.jpg")},
		{"photos/a.jpg", dir + "/", filepath.Join(dir, "a.jpg")},
		{"a.jpg", filepath.Join(dir, "b.jpg"), filepath.Join(dir, "b.jpg")},
	}
	for _, c := range cases {
		got, err := localPath(c.remote, c.local)
		if err != nil || got != c.want {
			t.Errorf("localPath(%q, %q) = %q, %v; want %q", c.remote, c.local, got, err, c.want)
		}
	}
	for _, remote := range []string{"..", "a/..", "/"} {
		if got, err := localPath(remote, ""); err == nil {
			t.Errorf("localPath(%q) = %q, want an error", remote, got)
		}
	}
}

func TestTreePathStaysBelowTheDirectory(t *testing.T) {
	cases := []struct{ prefix, name, want string }{
		{"photos/2026", "photos/2026/a.jpg", "2026/a.jpg"},
		{"photos/2026/", "photos/2026/x/b.jpg", "2026/x/b.jpg"},
		{"photos/", "photos/a.jpg", "photos/a.jpg"},
		{"photos", "photos/a.jpg", "photos/a.jpg"},
		{"", "a/b/c", "a/b/c"},
		{"pho", "photos/a.jpg", "photos/a.jpg"},
		{"a/b/c", "a/b/cd/e", "cd/e"},
	}
	for _, c := range cases {
		got, err := treePath(c.prefix, c.name)
		if err != nil || got != filepath.FromSlash(c.want) {
			t.Errorf("treePath(%q, %q) = %q, %v; want %q", c.prefix, c.name, got, err, c.want)
		}
	}
	// Names a hostile or broken server might list.
	for _, c := range []struct{ prefix, name string }{
		{"", "../etc/passwd"},
		{"", "/etc/passwd"},
		{"a", "a/../../x"},
		{"a/", "a/./b"},
		{"a", "a//b"},
		{"a", "b/c"},
		{"", "a\\..\\..\\x"},
		{"", "a\x00b"},
		{"", ""},
	} {
		if got, err := treePath(c.prefix, c.name); err == nil {
			t.Errorf("treePath(%q, %q) = %q, want an error", c.prefix, c.name, got)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		out, _, code := run(t, "completion", shell)
		if code != 0 || !strings.Contains(out, "ftfs") {
			t.Errorf("completion %s: exit %d", shell, code)
		}
	}
}

// TestStatusShowsWarnings: a file server's warning (a bucket with fewer
// replicas than its --replicas) is a line of its own at the top.
func TestStatusShowsWarnings(t *testing.T) {
	var out bytes.Buffer
	w := "backup: bucket ftfs-files has 1 replica(s), fewer than this server's --replicas 3; being raised"
	if err := printStatus(&out, client.Status{Warnings: []string{w}}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "WARNING: "+w+"\n") {
		t.Fatalf("status:\n%s", out.String())
	}
}

func TestCPUProfileOnRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	t.Setenv(EnvCPUProfile, path)
	if _, stderr, code := run(t, "version"); code != 0 {
		t.Fatalf("version: exit %d: %s", code, stderr)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("no profile at %s: %v", path, err)
	}
	t.Setenv(EnvCPUProfile, filepath.Join(t.TempDir(), "missing-dir", "cpu.prof"))
	if _, stderr, code := run(t, "version"); code != 1 || !strings.Contains(stderr, "cpu profile") {
		t.Fatalf("a profile that cannot be written: exit %d: %s", code, stderr)
	}
}

package subjects

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	good := []string{"a", "report.pdf", "photos/2026/a.jpg", "ünïcode ok.txt", "a..b", ".hidden", strings.Repeat("x", MaxNameLen)}
	for _, n := range good {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v, want ok", n, err)
		}
	}
	bad := map[string]struct {
		reason Reason
		text   string
	}{
		"":                        {ReasonNameEmpty, "empty"},
		"/etc/passwd":             {ReasonNameAbsolute, "absolute"},
		"a/":                      {ReasonNameTrailingSlash, "ends with a slash"},
		"a//b":                    {ReasonNameEmptySegment, "doubled slash"},
		"../x":                    {ReasonNameDotSegment, `".." segment`},
		"a/./b":                   {ReasonNameDotSegment, `"." segment`},
		".":                       {ReasonNameDotSegment, `"." segment`},
		"a\x00b":                  {ReasonNameControlChar, "control character"},
		"a\nb":                    {ReasonNameControlChar, "control character"},
		"a\x7f":                   {ReasonNameControlChar, "control character"},
		"a\\b":                    {ReasonNameBackslash, "backslash"},
		"\xff":                    {ReasonNameNotUTF8, "not valid UTF-8"},
		strings.Repeat("x", 1025): {ReasonNameTooLong, "the limit is 1024"},
	}
	for n, want := range bad {
		err := ValidName(n)
		if err == nil || !strings.Contains(err.Error(), want.text) || CodeOf(err) != CodeInvalid || ReasonOf(err) != want.reason {
			t.Errorf("ValidName(%q) = %v (reason %q), want an invalid-name error %q mentioning %q", n, err, ReasonOf(err), want.reason, want.text)
		}
	}
}

func TestValidUser(t *testing.T) {
	for _, u := range []string{"alice", "a", "bob_2", "x-y"} {
		if err := ValidUser(u); err != nil {
			t.Errorf("ValidUser(%q) = %v", u, err)
		}
	}
	for _, u := range []string{"", "Alice", "1abc", "a.b", "a*", "a>", "a b", strings.Repeat("a", 33), "_x"} {
		if ValidUser(u) == nil {
			t.Errorf("ValidUser(%q) accepted", u)
		}
	}
}

// FuzzValidName checks the property the servers and the backup rely on: a
// valid name, joined to a directory, stays inside it.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../a", "a/../../b", "/x", "a\\..\\b", "a//b", ".", "..", "a/./b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidName(name) != nil {
			return
		}
		dir := "/base/dir"
		p := filepath.Join(dir, filepath.FromSlash(name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("valid name %q escapes to %q", name, p)
		}
		if filepath.Clean(filepath.FromSlash(name)) != filepath.FromSlash(name) {
			t.Fatalf("valid name %q is not clean", name)
		}
	})
}

package subjects

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
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

// FuzzValidName checks the properties the servers and the backup rely on.
// An accepted name is valid UTF-8 of at most MaxNameLen bytes without NUL
// or control characters, is not absolute, and, joined to a directory,
// stays strictly inside it: made relative to the directory again, it is the
// name itself, never ".." or anything below it. A refused name is a
// CodeInvalid *Error with a Reason.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../a", "a/../../b", "/x", "a\\..\\b", "a//b", ".", "..", "a/./b", "..a", "a..", "...", "a/..b/c", "C:/x", "a\x00b", "\u200e..", "\xff/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidName(name)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalid || e.Reason == "" || e.Message == "" {
				t.Fatalf("ValidName(%q) = %#v: want a CodeInvalid *Error with a reason", name, err)
			}
			return
		}
		switch {
		case len(name) == 0 || len(name) > MaxNameLen:
			t.Fatalf("valid name %q is %d bytes", name, len(name))
		case !utf8.ValidString(name):
			t.Fatalf("valid name %q is not UTF-8", name)
		case strings.ContainsFunc(name, func(r rune) bool { return r == 0 || unicode.IsControl(r) }):
			t.Fatalf("valid name %q holds a control character", name)
		case filepath.IsAbs(name) || filepath.IsAbs(filepath.FromSlash(name)) || path.IsAbs(name):
			t.Fatalf("valid name %q is absolute", name)
		}
		dir := filepath.FromSlash("/base/dir")
		p := filepath.Join(dir, filepath.FromSlash(name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("valid name %q escapes to %q", name, p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel != filepath.FromSlash(name) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || !filepath.IsLocal(rel) {
			t.Fatalf("valid name %q below %q is %q relative to it (%v)", name, dir, rel, err)
		}
		if filepath.Clean(filepath.FromSlash(name)) != filepath.FromSlash(name) || path.Clean(name) != name {
			t.Fatalf("valid name %q is not clean", name)
		}
	})
}

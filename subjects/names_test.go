package subjects

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestValidName(t *testing.T) {
	good := []string{"a", "report.pdf", "photos/2026/a.jpg", "ünïcode ok.txt", "café/naïve.txt", "日本語.txt", "a\u2028b", "a..b", ".hidden", strings.Repeat("x", MaxNameLen)}
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
		"bob\u200b.txt":           {ReasonNameFormatChar, `"bob\u200b.txt" contains the invisible format character U+200B at byte 3`},
		"a\u202etxt.exe":          {ReasonNameFormatChar, `"a\u202etxt.exe" contains the invisible format character U+202E at byte 1`},
		"\ufeffreport.pdf":        {ReasonNameFormatChar, `"\ufeffreport.pdf" contains the invisible format character U+FEFF at byte 0`},
		"pass\u00adwords.txt":     {ReasonNameFormatChar, `"pass\u00adwords.txt" contains the invisible format character U+00AD at byte 4`},
		"d/\u2066x\u2069.txt":     {ReasonNameFormatChar, `"d/\u2066x\u2069.txt" contains the invisible format character U+2066 at byte 2`},
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

// TestValidNameFormatChars refuses every rune of Unicode category Cf, at
// the start, the middle and the end of a name, and the message shows it
// escaped: it holds no invisible character itself.
func TestValidNameFormatChars(t *testing.T) {
	n := 0
	for _, rng := range unicode.Cf.R16 {
		for r := rune(rng.Lo); r <= rune(rng.Hi); r += rune(rng.Stride) {
			n++
			checkFormatChar(t, r)
		}
	}
	for _, rng := range unicode.Cf.R32 {
		for r := rune(rng.Lo); r <= rune(rng.Hi); r += rune(rng.Stride) {
			n++
			checkFormatChar(t, r)
		}
	}
	if n < 20 {
		t.Fatalf("only %d runes in unicode.Cf", n)
	}
}

func checkFormatChar(t *testing.T, r rune) {
	t.Helper()
	for _, name := range []string{string(r) + "a.txt", "dir/a" + string(r) + ".txt", "a.txt" + string(r)} {
		err := ValidName(name)
		if ReasonOf(err) != ReasonNameFormatChar || CodeOf(err) != CodeInvalid {
			t.Errorf("ValidName(%q) = %v (reason %q), want reason %q", name, err, ReasonOf(err), ReasonNameFormatChar)
			continue
		}
		code := fmt.Sprintf("U+%04X at byte %d", r, strings.IndexRune(name, r))
		if msg := err.Error(); !strings.Contains(msg, code) || strings.ContainsFunc(msg, func(c rune) bool { return unicode.Is(unicode.Cf, c) }) {
			t.Errorf("ValidName(%q) = %q, want a message naming %s with the character escaped", name, msg, code)
		}
	}
}

func TestValidUser(t *testing.T) {
	for _, u := range []string{"alice", "a", "bob_2", "x-y"} {
		if err := ValidUser(u); err != nil {
			t.Errorf("ValidUser(%q) = %v", u, err)
		}
	}
	for _, u := range []string{"", "Alice", "1abc", "a.b", "a*", "a>", "a b", strings.Repeat("a", 33), "_x", "bob\u200b", "\ufeffbob", "a\u00adb", "al\u202eice"} {
		if ValidUser(u) == nil {
			t.Errorf("ValidUser(%q) accepted", u)
		}
	}
}

// FuzzValidName checks the properties the servers and the backup rely on.
// An accepted name is valid UTF-8 of at most MaxNameLen bytes without NUL,
// control characters or invisible format characters (Unicode Cf), is not
// absolute, and, joined to a directory, stays strictly inside it: made
// relative to the directory again, it is the name itself, never ".." or
// anything below it. A refused name is a
// CodeInvalid *Error with a Reason whose message shows the name escaped,
// without control or format characters of its own.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../a", "a/../../b", "/x", "a\\..\\b", "a//b", ".", "..", "a/./b", "..a", "a..", "...", "a/..b/c", "C:/x", "a\x00b", "\u200e..", "\xff/a", "bob\u200b.txt", "a\u202etxt.exe", "\ufeffa", "caf\u00e9/\u65e5.txt"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidName(name)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalid || e.Reason == "" || e.Message == "" {
				t.Fatalf("ValidName(%q) = %#v: want a CodeInvalid *Error with a reason", name, err)
			}
			if strings.ContainsFunc(e.Message, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
				t.Fatalf("ValidName(%q): message %q holds an unescaped control or format character", name, e.Message)
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
		case strings.ContainsFunc(name, func(r rune) bool { return unicode.Is(unicode.Cf, r) }):
			t.Fatalf("valid name %q holds an invisible format character", name)
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

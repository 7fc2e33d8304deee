package subjects

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidName checks a file name. Names are slash-separated paths relative to
// the shared space: "report.pdf", "photos/2026/a.jpg". The same check runs in
// the client (before any byte is sent) and in every server (before anything
// is stored), and a valid name is always safe to use as a relative path
// below a directory.
func ValidName(name string) error {
	switch {
	case name == "":
		return Rejectf(CodeInvalid, ReasonNameEmpty, "file name is empty")
	case len(name) > MaxNameLen:
		return Rejectf(CodeInvalid, ReasonNameTooLong, "file name is %d bytes; the limit is %d", len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return Rejectf(CodeInvalid, ReasonNameNotUTF8, "file name %q is not valid UTF-8", name)
	case strings.HasPrefix(name, "/"):
		return Rejectf(CodeInvalid, ReasonNameAbsolute, "file name %q is absolute; names are relative, without a leading slash", name)
	case strings.HasSuffix(name, "/"):
		return Rejectf(CodeInvalid, ReasonNameTrailingSlash, "file name %q ends with a slash", name)
	}
	for i, r := range name {
		if r == 0 || unicode.IsControl(r) {
			return Rejectf(CodeInvalid, ReasonNameControlChar, "file name %q contains a control character", name)
		}
		if unicode.Is(unicode.Cf, r) {
			return Rejectf(CodeInvalid, ReasonNameFormatChar, "file name %q contains the invisible format character U+%04X at byte %d", name, r, i)
		}
		if r == '\\' {
			return Rejectf(CodeInvalid, ReasonNameBackslash, "file name %q contains a backslash; use / between directories", name)
		}
	}
	for _, seg := range strings.Split(name, "/") {
		switch seg {
		case "":
			return Rejectf(CodeInvalid, ReasonNameEmptySegment, "file name %q has an empty segment (doubled slash)", name)
		case ".", "..":
			return Rejectf(CodeInvalid, ReasonNameDotSegment, "file name %q has a %q segment", name, seg)
		}
	}
	return nil
}

// MaxUserLen bounds a user name.
const MaxUserLen = 32

// ValidUser checks a user name: 1 to 32 of a-z, 0-9, '_' and '-', starting
// with a letter. User names become a token of the user's inbox subject, so
// they must never hold '.', '*', '>' or white space.
func ValidUser(user string) error {
	if user == "" {
		return Errorf(CodeInvalid, "user name is empty")
	}
	if user == GatewayUser {
		return Errorf(CodeInvalid, "user name %q is reserved for the share link gateway", user)
	}
	if len(user) > MaxUserLen {
		return Errorf(CodeInvalid, "user name %q is longer than %d characters", user, MaxUserLen)
	}
	for i, r := range user {
		ok := r >= 'a' && r <= 'z' || i > 0 && (r >= '0' && r <= '9' || r == '_' || r == '-')
		if !ok {
			return Errorf(CodeInvalid, "user name %q: use lower-case letters, digits, '_' and '-', starting with a letter", user)
		}
	}
	return nil
}

// MinPasswordLen is the shortest password a server accepts for a new user.
const MinPasswordLen = 8

// ValidPassword checks a new password.
func ValidPassword(pw string) error {
	if len(pw) < MinPasswordLen {
		return Errorf(CodeInvalid, "password is shorter than %d characters", MinPasswordLen)
	}
	if len(pw) > 72 {
		return Errorf(CodeInvalid, "password is longer than 72 bytes (the bcrypt limit)")
	}
	return nil
}

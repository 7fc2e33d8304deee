package subjects

import (
	"slices"
	"strings"
)

// Access rules, in the style of Upspin's Access files. A rule belongs to a
// folder (its prefix: "" for the root, otherwise a path ending in "/") and
// governs every file below it down to the next folder with a rule of its
// own: the nearest rule at or above a file's folder decides alone, rules
// are never merged. A rule is lines of the form
//
//	read,list: alice, @eng
//	write: *
//
// each giving rights to members: a user name, a group (@ and its name) or
// AccessEveryone. Client and servers check rules with the same functions
// here, so a mistake is reported before anything is sent.

// The rights a rule can give.
const (
	// RightRead: get or download a file, stat it.
	RightRead = "read"
	// RightList: see a file's name in listings and watches, stat it.
	RightList = "list"
	// RightWrite: create a name; overwrite, rename or delete a file one
	// owns.
	RightWrite = "write"
	// RightDelete: delete, overwrite or rename away anyone's file.
	RightDelete = "delete"
	// RightAdmin: set or remove the rules at or below the folder.
	RightAdmin = "admin"
)

// AccessRights are the rights in the order a rule writes them.
var AccessRights = []string{RightRead, RightList, RightWrite, RightDelete, RightAdmin}

// AccessEveryone as a member is every logged-in user.
const AccessEveryone = "*"

// GroupMark starts a group's name where a rule names it as a member
// ("@eng").
const GroupMark = "@"

// Limits on what the access bucket holds, so that the one record every
// request reads stays small.
const (
	MaxAccessLines   = 32  // lines in one rule
	MaxAccessMembers = 64  // members on one line
	MaxGroupUsers    = 500 // users in one group
	// MaxAccessRecord bounds the stored rules and groups together, in
	// bytes of their JSON.
	MaxAccessRecord = 256 << 10
)

// AccessLine is one line of a rule: these rights, to these members.
type AccessLine struct {
	Rights  []string
	Members []string
}

// String writes the line as ParseAccessLine reads it, rights in
// AccessRights' order: "read,list: alice, @eng".
func (l AccessLine) String() string {
	return strings.Join(l.Rights, ",") + ": " + strings.Join(l.Members, ", ")
}

// ParseAccessLine reads one line of a rule: rights, a colon, members.
// Rights and members are separated by commas or spaces; rights are
// case-insensitive and written back in AccessRights' order, each once;
// members keep their order, each once.
func ParseAccessLine(line string) (AccessLine, error) {
	rights, members, ok := strings.Cut(line, ":")
	if !ok {
		return AccessLine{}, Rejectf(CodeInvalid, ReasonAccessSyntax, "access rule line %q: want RIGHTS: MEMBERS, such as %q", line, "read,list: alice, @eng")
	}
	var l AccessLine
	have := map[string]bool{}
	for _, r := range splitList(rights) {
		r = strings.ToLower(r)
		if !slices.Contains(AccessRights, r) {
			return AccessLine{}, Rejectf(CodeInvalid, ReasonAccessRight, "access rule line %q: unknown right %q; the rights are %s", line, r, strings.Join(AccessRights, ", "))
		}
		have[r] = true
	}
	for _, r := range AccessRights {
		if have[r] {
			l.Rights = append(l.Rights, r)
		}
	}
	if len(l.Rights) == 0 {
		return AccessLine{}, Rejectf(CodeInvalid, ReasonAccessRight, "access rule line %q: no rights before the colon; the rights are %s", line, strings.Join(AccessRights, ", "))
	}
	for _, m := range splitList(members) {
		if err := ValidMember(m); err != nil {
			return AccessLine{}, Rejectf(CodeInvalid, ReasonAccessMember, "access rule line %q: %v", line, err)
		}
		if !slices.Contains(l.Members, m) {
			l.Members = append(l.Members, m)
		}
	}
	switch {
	case len(l.Members) == 0:
		return AccessLine{}, Rejectf(CodeInvalid, ReasonAccessMember, "access rule line %q: no members after the colon: name users, @groups or %s for every user", line, AccessEveryone)
	case len(l.Members) > MaxAccessMembers:
		return AccessLine{}, Rejectf(CodeInvalid, ReasonAccessMember, "access rule line %q: %d members; the limit is %d (make a group)", line, len(l.Members), MaxAccessMembers)
	}
	return l, nil
}

// ParseAccessRule reads a rule's lines (ParseAccessLine); a rule has at
// least one.
func ParseAccessRule(lines []string) ([]AccessLine, error) {
	if len(lines) == 0 {
		return nil, Rejectf(CodeInvalid, ReasonAccessEmpty, "empty access rule: give at least one line such as %q (to go back to the folder's inherited rule, remove its rule instead)", "read,list: *")
	}
	if len(lines) > MaxAccessLines {
		return nil, Rejectf(CodeInvalid, ReasonAccessEmpty, "access rule of %d lines; the limit is %d", len(lines), MaxAccessLines)
	}
	out := make([]AccessLine, 0, len(lines))
	for _, line := range lines {
		l, err := ParseAccessLine(line)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// ValidMember checks a member of a rule's line: a user name (ValidUser),
// a group (GroupMark and ValidGroup), or AccessEveryone.
func ValidMember(m string) error {
	if m == AccessEveryone {
		return nil
	}
	if g, ok := strings.CutPrefix(m, GroupMark); ok {
		return ValidGroup(g)
	}
	if err := ValidUser(m); err != nil {
		return Errorf(CodeInvalid, "member %q is neither a user name, nor @ and a group's name, nor %s", m, AccessEveryone)
	}
	return nil
}

// ValidGroup checks a group's name: the rules of a user name (ValidUser),
// without the GroupMark a rule writes before it.
func ValidGroup(g string) error {
	if strings.HasPrefix(g, GroupMark) {
		return Rejectf(CodeInvalid, ReasonGroupName, "group name %q: leave out the %s, which only a rule writes before it", g, GroupMark)
	}
	if err := ValidUser(g); err != nil {
		return Rejectf(CodeInvalid, ReasonGroupName, "group name %q: use 1 to %d lower-case letters, digits, '_' and '-', starting with a letter", g, MaxUserLen)
	}
	return nil
}

// ValidAccessPrefix checks the folder a rule belongs to: "" (the root) or
// a valid file name followed by "/" ("projects/x/").
func ValidAccessPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	dir, ok := strings.CutSuffix(prefix, "/")
	if !ok {
		return Rejectf(CodeInvalid, ReasonAccessPrefix, "access prefix %q is not a folder: end it with /, or give \"\" for the root", prefix)
	}
	if err := ValidName(dir); err != nil {
		return Rejectf(CodeInvalid, ReasonAccessPrefix, "access prefix %q: %v", prefix, err)
	}
	return nil
}

// AccessFolder is the folder of a file name, whose rule (or its nearest
// parent's) governs the file: "projects/x/" for "projects/x/a.txt", ""
// for "a.txt". A path ending in "/" is a folder already.
func AccessFolder(name string) string {
	i := strings.LastIndexByte(name, '/')
	return name[:i+1]
}

// ParentFolder is the folder above a folder prefix: "projects/" for
// "projects/x/", "" for "projects/"; ok is false for the root.
func ParentFolder(prefix string) (parent string, ok bool) {
	if prefix == "" {
		return "", false
	}
	return AccessFolder(strings.TrimSuffix(prefix, "/")), true
}

// HomeRoot is the folder of the users' home folders: HomeRoot + user + "/"
// is private to its user unless a rule says otherwise.
const HomeRoot = "home/"

// Home is user's home folder.
func Home(user string) string { return HomeRoot + user + "/" }

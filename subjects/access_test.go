package subjects

import (
	"reflect"
	"testing"
)

func TestParseAccessLine(t *testing.T) {
	for _, tc := range []struct {
		line   string
		want   string // canonical form; "" when refused
		reason Reason
	}{
		{"read,list: alice, @eng", "read,list: alice, @eng", ""},
		{"list,READ:alice,@eng", "read,list: alice, @eng", ""},
		{"admin delete write list read: *", "read,list,write,delete,admin: *", ""},
		{"read,read: bob bob", "read: bob", ""},
		{"  write :  carol ", "write: carol", ""},
		{"read list alice", "", ReasonAccessSyntax},
		{"", "", ReasonAccessSyntax},
		{"reed: alice", "", ReasonAccessRight},
		{"r: alice", "", ReasonAccessRight},
		{": alice", "", ReasonAccessRight},
		{"read:", "", ReasonAccessMember},
		{"read: ,", "", ReasonAccessMember},
		{"read: Alice", "", ReasonAccessMember},
		{"read: @", "", ReasonAccessMember},
		{"read: @@eng", "", ReasonAccessMember},
		{"read: @Eng", "", ReasonAccessMember},
		{"read: **", "", ReasonAccessMember},
		{"read: alice.bob", "", ReasonAccessMember},
		{"read: al>ice", "", ReasonAccessMember},
		{"read: alice: bob", "", ReasonAccessMember},
	} {
		l, err := ParseAccessLine(tc.line)
		if tc.want == "" {
			if err == nil || ReasonOf(err) != tc.reason || CodeOf(err) != CodeInvalid {
				t.Errorf("ParseAccessLine(%q) = %v, %v; want refused with %s", tc.line, l, err, tc.reason)
			}
			continue
		}
		if err != nil || l.String() != tc.want {
			t.Errorf("ParseAccessLine(%q) = %q, %v; want %q", tc.line, l.String(), err, tc.want)
		}
	}
}

func TestParseAccessRule(t *testing.T) {
	if _, err := ParseAccessRule(nil); ReasonOf(err) != ReasonAccessEmpty {
		t.Errorf("an empty rule: %v, want %s", err, ReasonAccessEmpty)
	}
	many := make([]string, MaxAccessLines+1)
	for i := range many {
		many[i] = "read: *"
	}
	if _, err := ParseAccessRule(many); ReasonOf(err) != ReasonAccessEmpty {
		t.Errorf("a rule of %d lines: %v, want refused", len(many), err)
	}
	if _, err := ParseAccessRule([]string{"read: *", "wrote: bob"}); ReasonOf(err) != ReasonAccessRight {
		t.Errorf("one bad line among good ones: %v, want %s", err, ReasonAccessRight)
	}
	got, err := ParseAccessRule([]string{"read: *", "write: bob"})
	want := []AccessLine{{[]string{"read"}, []string{"*"}}, {[]string{"write"}, []string{"bob"}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseAccessRule = %v, %v; want %v", got, err, want)
	}
}

func TestValidAccessPrefix(t *testing.T) {
	for prefix, ok := range map[string]bool{
		"":               true,
		"projects/":      true,
		"projects/x/":    true,
		"home/alice/":    true,
		"projects":       false,
		"/":              false,
		"/projects/":     false,
		"projects//":     false,
		"a//b/":          false,
		"../":            false,
		"a/./":           false,
		"a/\u200b/":      false,
		"a\\b/":          false,
		"projects/x/y":   false,
		"home/alice//":   false,
		"\x00/":          false,
		"projects/../x/": false,
	} {
		err := ValidAccessPrefix(prefix)
		if (err == nil) != ok {
			t.Errorf("ValidAccessPrefix(%q) = %v, want ok %v", prefix, err, ok)
		}
		if err != nil && ReasonOf(err) != ReasonAccessPrefix {
			t.Errorf("ValidAccessPrefix(%q): reason %q, want %s", prefix, ReasonOf(err), ReasonAccessPrefix)
		}
	}
}

func TestValidGroup(t *testing.T) {
	for g, ok := range map[string]bool{"eng": true, "team-2": true, "a_b": true, "": false, "@eng": false, "Eng": false, "2eng": false, "e.g": false, "*": false} {
		if err := ValidGroup(g); (err == nil) != ok {
			t.Errorf("ValidGroup(%q) = %v, want ok %v", g, err, ok)
		}
	}
}

func TestAccessFolders(t *testing.T) {
	for name, want := range map[string]string{"a.txt": "", "p/x/a.txt": "p/x/", "p/x/": "p/x/", "": ""} {
		if got := AccessFolder(name); got != want {
			t.Errorf("AccessFolder(%q) = %q, want %q", name, got, want)
		}
	}
	for prefix, want := range map[string]string{"p/x/": "p/", "p/": ""} {
		if got, ok := ParentFolder(prefix); !ok || got != want {
			t.Errorf("ParentFolder(%q) = %q, %v; want %q", prefix, got, ok, want)
		}
	}
	if _, ok := ParentFolder(""); ok {
		t.Error("the root has a parent")
	}
}

func TestAccessRequestsDecode(t *testing.T) {
	for _, tc := range []struct {
		body   string
		into   any
		reason Reason
	}{
		{`{"prefix":"p/","lines":["read: *"]}`, &AccessSetRequest{}, ""},
		{`{"lines":["read: *"]}`, &AccessSetRequest{}, ""},
		{`{"prefix":"p","lines":["read: *"]}`, &AccessSetRequest{}, ReasonAccessPrefix},
		{`{"prefix":"p/"}`, &AccessSetRequest{}, ReasonAccessEmpty},
		{`{"prefix":"p/","lines":["read: *"],"admin":true}`, &AccessSetRequest{}, ReasonUnknownField},
		{`{"prefix":"p/","lines":"read: *"}`, &AccessSetRequest{}, ReasonWrongType},
		{`{"prefix":"p/x"}`, &AccessPrefixRequest{}, ReasonAccessPrefix},
		{`{"path":"p/x"}`, &AccessShowRequest{}, ""},
		{`{"path":"../x"}`, &AccessShowRequest{}, ReasonNameDotSegment},
		{`{"group":"eng","users":["alice"]}`, &GroupRequest{}, ""},
		{`{"users":["alice"]}`, &GroupRequest{}, ReasonMissingField},
		{`{"group":"@eng","users":["alice"]}`, &GroupRequest{}, ReasonGroupName},
		{`{"group":"Eng"}`, &GroupListRequest{}, ReasonGroupName},
	} {
		err := Decode([]byte(tc.body), tc.into)
		if ReasonOf(err) != tc.reason || (tc.reason == "") != (err == nil) {
			t.Errorf("Decode(%s) into %T = %v, want reason %q", tc.body, tc.into, err, tc.reason)
		}
	}
}

package fileserver

import (
	"testing"
	"time"
)

func TestPassedLinkPasswordsRememberOnlyTheRightOne(t *testing.T) {
	p := newPassedLinkPasswords()
	now := time.Now()
	link := shareRecord{ID: "l1", Hash: []byte("hash-1")}
	if p.passed(link, "secret", now) {
		t.Fatal("a password never checked passed")
	}
	p.remember(link, "secret", now)
	if !p.passed(link, "secret", now.Add(time.Minute)) {
		t.Fatal("the right password, checked a minute ago, did not pass")
	}
	for what, c := range map[string]struct {
		rec      shareRecord
		password string
		at       time.Time
	}{
		"another password":             {link, "secret2", now},
		"the password of another link": {shareRecord{ID: "l2", Hash: link.Hash}, "secret", now},
		"a changed password hash":      {shareRecord{ID: "l1", Hash: []byte("hash-2")}, "secret", now},
		"the same bytes split apart":   {shareRecord{ID: "l1h", Hash: []byte("ash-1")}, "secret", now},
		"after the time it counts":     {link, "secret", now.Add(linkPasswordRemembered)},
	} {
		if p.passed(c.rec, c.password, c.at) {
			t.Errorf("%s passed", what)
		}
	}
}

func TestPassedLinkPasswordsStayBounded(t *testing.T) {
	p := newPassedLinkPasswords()
	now := time.Now()
	link := func(i int) shareRecord { return shareRecord{ID: "l", Hash: []byte{byte(i), byte(i >> 8)}} }
	n := 3 * maxPassedLinkPasswords
	for i := range n {
		p.remember(link(i), "pw", now.Add(time.Duration(i)*time.Millisecond))
		if len(p.until) > maxPassedLinkPasswords {
			t.Fatalf("%d remembered, more than %d", len(p.until), maxPassedLinkPasswords)
		}
	}
	if !p.passed(link(n-1), "pw", now.Add(time.Minute)) {
		t.Fatal("the newest password was dropped")
	}
}

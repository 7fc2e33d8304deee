package fileserver

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// readOnlyDo runs f while s is read-only and fails the test with its
// error. The quorum watch makes s writable again at its next poll (storage
// is fine here), and only ever sets it that way, so a run that ends
// read-only ran read-only throughout; a run the watch cut short is run
// again, whatever it returned.
func readOnlyDo(t *testing.T, s *Server, f func() error) {
	t.Helper()
	defer s.store.SetReadOnly(false)
	for range 5 {
		s.store.SetReadOnly(true)
		err := f()
		if s.store.ReadOnly() {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("could not stay read-only for one step")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSessionsEndWhileReadOnly checks that a revoked session, and the
// session of a removed user, stay refused while storage is read-only and
// sessions are checked against the server's mirror, and that a live one
// still works there.
func TestSessionsEndWhileReadOnly(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	for _, u := range []string{"alice", "bob"} {
		if err := admin.call(subjects.UserAdd, subjects.UserRequest{User: u, Password: u + "-password"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	alice := dialUser(t, url, "alice", "alice-password")
	bob := dialUser(t, url, "bob", "bob-password")
	mirrored := func(u *rawUser) bool {
		_, ok := s.sessionsMirror.get(sessionKey(u.token))
		return ok
	}
	waitUntil(t, "the sessions in the mirror", func() bool { return mirrored(alice) && mirrored(bob) && mirrored(admin) })
	readOnlyDo(t, s, func() error {
		var who subjects.SessionInfo
		if err := alice.call(subjects.WhoAmI, subjects.Empty{}, &who); err != nil || who.User != "alice" {
			return fmt.Errorf("a live session while read-only: %v %+v", err, who)
		}
		// bob's sessions end below anyway, should the watch make the
		// server writable in the middle of this.
		if err := admin.call(subjects.UserRevoke, subjects.UserRequest{User: "bob"}, nil); subjects.CodeOf(err) != subjects.CodeReadOnly {
			return fmt.Errorf("revoke while read-only: %v, want CodeReadOnly", err)
		}
		return nil
	})

	if err := admin.call(subjects.UserRevoke, subjects.UserRequest{User: "alice"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := admin.call(subjects.UserRemove, subjects.UserRequest{User: "bob"}, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the mirror to drop them", func() bool {
		_, bobThere := s.usersMirror.get("bob")
		return !mirrored(alice) && !mirrored(bob) && !bobThere
	})
	readOnlyDo(t, s, func() error {
		for _, u := range []*rawUser{alice, bob} {
			if err := u.call(subjects.WhoAmI, subjects.Empty{}, nil); subjects.CodeOf(err) != subjects.CodeUnauthorized {
				return fmt.Errorf("%s's ended session while read-only: %v, want CodeUnauthorized", u.user, err)
			}
		}
		if err := admin.call(subjects.WhoAmI, subjects.Empty{}, nil); err != nil {
			return fmt.Errorf("the admin's session while read-only: %v", err)
		}
		return nil
	})
	if err := alice.call(subjects.WhoAmI, subjects.Empty{}, nil); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("alice's revoked session: %v, want CodeUnauthorized", err)
	}
}

func TestSessionsEndWithLogoutAndPasswordChange(t *testing.T) {
	url := startTestBroker(t)
	startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")
	if err := admin.call(subjects.UserAdd, subjects.UserRequest{User: "alice", Password: "alice-password"}, nil); err != nil {
		t.Fatal(err)
	}
	alice1 := dialUser(t, url, "alice", "alice-password")
	alice2 := dialUser(t, url, "alice", "alice-password")
	if err := alice1.call(subjects.WhoAmI, subjects.Empty{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := alice1.call(subjects.Logout, subjects.Empty{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := alice1.call(subjects.WhoAmI, subjects.Empty{}, nil); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("after logout: %v", err)
	}
	if err := alice2.call(subjects.WhoAmI, subjects.Empty{}, nil); err != nil {
		t.Fatalf("the other session must live on: %v", err)
	}
	if err := admin.call(subjects.UserPassword, subjects.UserRequest{User: "alice", Password: "new-password"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := alice2.call(subjects.WhoAmI, subjects.Empty{}, nil); subjects.CodeOf(err) != subjects.CodeUnauthorized {
		t.Fatalf("after a password change: %v", err)
	}
	if err := admin.call(subjects.UserRemove, subjects.UserRequest{User: "admin"}, nil); subjects.CodeOf(err) != subjects.CodeForbidden {
		t.Fatalf("removing oneself: %v", err)
	}
	if err := admin.call(subjects.List, json.RawMessage(`{"prefix":1}`), nil); subjects.CodeOf(err) != subjects.CodeInvalid {
		t.Fatalf("malformed request: %v", err)
	}
	if err := admin.call(subjects.List, json.RawMessage(`{"bogus":true}`), nil); subjects.CodeOf(err) != subjects.CodeInvalid {
		t.Fatalf("unknown field: %v", err)
	}
}

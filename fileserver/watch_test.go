package fileserver

import (
	"context"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// TestExpiredUploadsReleaseTheirWriter checks that when one server drops an
// idle upload that the other holds, the holder stops its writer too.
func TestExpiredUploadsReleaseTheirWriter(t *testing.T) {
	url := startTestBroker(t)
	var servers []*Server
	for _, role := range []string{RolePrimary, RoleBackup} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		s, err := Start(ctx, Config{
			Servers: []string{url}, ServicePassword: testServicePassword, AdminPassword: "admin-password",
			Role: role, Logger: startTestLogger(), UploadIdle: time.Second,
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		servers = append(servers, s)
	}
	admin := dialUser(t, url, AdminUser, "admin-password")
	var st subjects.UploadState
	for range 4 { // each server, most likely, holds one
		if err := admin.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: "idle", Size: -1}, &st); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.sendChunk(st, 0, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	held := func() int {
		n := 0
		for _, s := range servers {
			n += s.holders.count()
		}
		return n
	}
	if n := held(); n != 4 {
		t.Fatalf("%d uploads held, want 4", n)
	}
	deadline := time.Now().Add(15 * time.Second)
	for held() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d writers of expired uploads still running", held())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

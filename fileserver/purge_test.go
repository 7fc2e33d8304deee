package fileserver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// TestDeletesAndOverwritesPurgeTheirChunks: a version's chunks go once no
// name points at it (purge.go), many at once as a `rm -r` makes them, and
// the chunks of every live version stay.
func TestDeletesAndOverwritesPurgeTheirChunks(t *testing.T) {
	url := startTestBroker(t)
	s := startTestServer(t, url, RolePrimary)
	admin := dialUser(t, url, AdminUser, "admin-password")

	const n = 30
	first := map[string]string{} // name -> its first version
	for i := range n {
		name := fmt.Sprintf("f-%02d", i)
		fi, err := admin.put(name, []byte("first content of "+name))
		if err != nil {
			t.Fatal(err)
		}
		first[name] = fi.Version
	}
	var gone, live []string
	for i := range n {
		name := fmt.Sprintf("f-%02d", i)
		switch i % 3 {
		case 0: // deleted
			if err := admin.call(subjects.Delete, subjects.NameRequest{Name: name}, nil); err != nil {
				t.Fatal(err)
			}
			gone = append(gone, first[name])
		case 1: // overwritten: the new version lives, the first goes
			fi, err := admin.put(name, []byte("second content of "+name))
			if err != nil {
				t.Fatal(err)
			}
			gone, live = append(gone, first[name]), append(live, fi.Version)
		default: // left alone
			live = append(live, first[name])
		}
	}
	stored := func(version string) bool {
		_, err := s.store.ObjectStream().GetLastMsgForSubject(context.Background(), s.chunkSubject(version))
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, v := range gone {
		for stored(v) {
			if time.Now().After(deadline) {
				t.Fatalf("the chunks of version %s, which no name holds, are still stored", v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, v := range live {
		if !stored(v) {
			t.Errorf("the chunks of live version %s were purged", v)
		}
	}
}

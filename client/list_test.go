package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/fileserver"
	"github.com/ftfs/ftfs/subjects"
)

// TestListPagesGivesEachPageAsItComes lists through a hand-made file
// server whose storage loses its quorum after the first page, so that a
// backup's replica answers the rest: ListPages gives each page as it
// comes, asking for the next after the last name of the one before; the
// replica's pages, and each of their files, carry its lag; ListFiles and
// List are every page together; an error of the page function ends the
// listing, as it is; a server's error is wrapped with the prefix.
func TestListPagesGivesEachPageAsItComes(t *testing.T) {
	sys := startSystem(t, fileserver.RolePrimary)
	c := sys.login(t, fileserver.AdminUser, adminPassword)
	sys.servers[0].Stop() // from here on, the hand-made server answers

	svc, err := nats.Connect(sys.url, nats.UserInfo(subjects.FrontUser, servicePassword), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	const n = 2*subjects.MaxListPage + 100
	name := func(prefix string, i int) string { return fmt.Sprintf("%s%04d", prefix, i) }
	lag := subjects.ReplicaLag{AsOf: time.Now().UTC().Round(time.Second), Pending: 2}
	var mu sync.Mutex
	var asked []string // every request, and who it went to
	serve := func(who, subject string, answer func(r subjects.ListRequest) (*subjects.ListReply, subjects.Code)) {
		_, err := svc.QueueSubscribe(subject, subjects.QueueGroup, func(m *nats.Msg) {
			var r subjects.ListRequest
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			asked = append(asked, fmt.Sprintf("%s: %q after %q, limit %d", who, r.Prefix, r.After, r.Limit))
			mu.Unlock()
			reply, code := answer(r)
			resp := nats.NewMsg(m.Reply)
			if code != "" {
				resp.Header.Set(subjects.HeaderErrorCode, string(code))
				resp.Header.Set(subjects.HeaderErrorText, "hand-made")
			} else {
				resp.Data, _ = json.Marshal(reply)
			}
			if err := m.RespondMsg(resp); err != nil {
				t.Error(err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A page of files p0000 to p2099 starting after r.After.
	page := func(r subjects.ListRequest) *subjects.ListReply {
		first := 0
		if r.After != "" {
			if _, err := fmt.Sscanf(strings.TrimPrefix(r.After, r.Prefix), "%d", &first); err != nil {
				t.Errorf("after %q: %v", r.After, err)
			}
			first++
		}
		reply := &subjects.ListReply{Files: []subjects.FileInfo{}}
		for i := first; i < n && len(reply.Files) < r.Limit; i++ {
			reply.Files = append(reply.Files, subjects.FileInfo{Name: name(r.Prefix, i), Owner: fileserver.AdminUser})
		}
		reply.More = first+len(reply.Files) < n
		return reply
	}
	serve("storage", subjects.List, func(r subjects.ListRequest) (*subjects.ListReply, subjects.Code) {
		switch {
		case r.Prefix == "forbidden/":
			return nil, subjects.CodeForbidden
		case r.Prefix == "p" && r.After == "":
			return page(r), "" // storage answers the first page ...
		}
		return nil, subjects.CodeReadOnly // ... then loses its quorum
	})
	serve("replica", subjects.ReplicaList, func(r subjects.ListRequest) (*subjects.ListReply, subjects.Code) {
		if r.Prefix != "p" {
			return &subjects.ListReply{Files: []subjects.FileInfo{}, Replica: &lag}, ""
		}
		reply := page(r)
		reply.Replica = &lag
		return reply, ""
	})
	sameLag := func(l subjects.ReplicaLag) bool { return l.AsOf.Equal(lag.AsOf) && l.Pending == lag.Pending }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	drain := func() []string {
		mu.Lock()
		defer mu.Unlock()
		a := asked
		asked = nil
		return a
	}

	var pages []client.Listing
	err = c.ListPages(ctx, "p", func(p client.Listing) error {
		pages = append(pages, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`storage: "p" after "", limit 1000`,
		`storage: "p" after "p0999", limit 1000`, // read-only: to the replica
		`replica: "p" after "p0999", limit 1000`,
		`storage: "p" after "p1999", limit 1000`,
		`replica: "p" after "p1999", limit 1000`,
	}
	if got := drain(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(pages) != 3 || len(pages[0].Files) != 1000 || len(pages[1].Files) != 1000 || len(pages[2].Files) != 100 {
		t.Fatalf("%d pages, want 1000, 1000 and 100 files", len(pages))
	}
	i := 0
	for p, pg := range pages {
		if (pg.Replica != nil) != (p > 0) {
			t.Fatalf("page %d: replica %v", p, pg.Replica)
		}
		for _, f := range pg.Files {
			if f.Name != name("p", i) {
				t.Fatalf("file %d is %q, want %q", i, f.Name, name("p", i))
			}
			if (f.Replica != nil) != (p > 0) || (f.Replica != nil && !sameLag(*f.Replica)) {
				t.Fatalf("%s, on page %d: replica %v", f.Name, p, f.Replica)
			}
			i++
		}
	}

	l, err := c.ListFiles(ctx, "p")
	if err != nil || len(l.Files) != n || l.Files[n-1].Name != name("p", n-1) || l.Replica == nil || !sameLag(*l.Replica) {
		t.Fatalf("ListFiles: %d files, replica %v, %v", len(l.Files), l.Replica, err)
	}
	files, err := c.List(ctx, "p")
	if err != nil || len(files) != n {
		t.Fatalf("List: %d files, %v", len(files), err)
	}
	drain()

	// A replica's empty listing is one empty page, and says so.
	calls := 0
	err = c.ListPages(ctx, "none", func(p client.Listing) error {
		calls++
		if len(p.Files) != 0 || p.Replica == nil {
			t.Errorf("empty listing: %+v", p)
		}
		return nil
	})
	if err != nil || calls != 1 {
		t.Fatalf("empty listing: %d pages, %v", calls, err)
	}
	if l, err := c.ListFiles(ctx, "none"); err != nil || len(l.Files) != 0 || l.Replica == nil {
		t.Fatalf("empty ListFiles: %+v, %v", l, err)
	}
	drain()

	errStop := errors.New("stop")
	calls = 0
	err = c.ListPages(ctx, "p", func(client.Listing) error { calls++; return errStop })
	if err != errStop || calls != 1 {
		t.Fatalf("stopped listing: %v after %d pages, want the page function's error after 1", err, calls)
	}
	if got := drain(); len(got) != 1 {
		t.Fatalf("a stopped listing asked for more: %q", got)
	}

	_, err = c.ListFiles(ctx, "forbidden/")
	if !errors.Is(err, client.ErrForbidden) || !strings.HasPrefix(err.Error(), `list "forbidden/": `) {
		t.Fatalf("a server's error: %v, want ErrForbidden after the prefix", err)
	}
}

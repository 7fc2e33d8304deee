package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// httpDo sends a request through net/http's client and returns the
// response with its whole body.
func httpDo(t *testing.T, method, url string, header http.Header, password string, body []byte) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if password != "" {
		req.SetBasicAuth("anyone", password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: read body: %v", method, err)
	}
	return resp, got
}

func wantStatus(t *testing.T, what string, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d (%q), want %d", what, resp.StatusCode, truncate(body), want)
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

func share(t *testing.T, c *client.Client, name string, o client.ShareOptions) client.ShareInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := c.Share(ctx, name, o)
	if err != nil {
		t.Fatalf("share %s: %v", name, err)
	}
	if !subjects.ValidLinkToken(info.Token) || info.ID == "" || info.Owner != c.User() {
		t.Fatalf("share %s: answer %+v: want a token, an ID and the owner %s", name, info, c.User())
	}
	return info
}

// TestShareLinks walks what a link's holder does with a real HTTP client
// through a gateway process: download a file byte for byte, its headers,
// ranges, a password, expiry, revocation, the file's deletion; and what
// the sharer does with `ftfs share`, and that no token reaches a log.
func TestShareLinks(t *testing.T) {
	t.Parallel() // see doc.go
	// Three wrong passwords lock a link (as a user name) for an hour, so
	// that the test of the lock does not race the back-off's clock.
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"),
		ftfstest.ServerArgs("--login-lock-after", "3", "--login-lock", "1h"))
	sys.AddUser(t, "alice")
	sys.AddUser(t, "bob")
	alice := sys.Login(t, "alice")
	bob := sys.Login(t, "bob")
	gw := sys.StartGateway(t, "gateway1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const size = 2*subjects.ChunkSize + 12345 // three chunks
	video := sys.PutRandom(t, alice, "media/clip.mp4", size)
	small := []byte("hello, link\n")
	if _, err := alice.Put(ctx, "notes.txt", bytes.NewReader(small), int64(len(small))); err != nil {
		t.Fatalf("put notes.txt: %v", err)
	}
	var tokens []string
	link := func(info client.ShareInfo) string {
		tokens = append(tokens, info.Token)
		return gw + "/s/" + info.Token
	}
	clip := link(share(t, alice, "media/clip.mp4", client.ShareOptions{}))

	t.Run("download", func(t *testing.T) {
		resp, body := httpDo(t, http.MethodGet, clip, nil, "", nil)
		wantStatus(t, "GET", resp, body, http.StatusOK)
		ftfstest.SameBytes(t, video, body)
		for k, want := range map[string]string{
			"Content-Length":      strconv.Itoa(size),
			"Content-Type":        "video/mp4",
			"Content-Disposition": `attachment; filename=clip.mp4`,
			"Accept-Ranges":       "bytes",
			"Etag":                strconv.Quote(ftfstest.Digest(video)),
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
		if _, err := http.ParseTime(resp.Header.Get("Last-Modified")); err != nil {
			t.Errorf("Last-Modified %q: %v", resp.Header.Get("Last-Modified"), err)
		}
		notes := link(share(t, alice, "notes.txt", client.ShareOptions{}))
		resp, body = httpDo(t, http.MethodGet, notes, nil, "", nil)
		wantStatus(t, "GET a small file", resp, body, http.StatusOK)
		ftfstest.SameBytes(t, small, body)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type of notes.txt: %q", ct)
		}
		// Bob shares Alice's file: every user may read it today.
		bobs := link(share(t, bob, "notes.txt", client.ShareOptions{}))
		resp, body = httpDo(t, http.MethodGet, bobs, nil, "", nil)
		wantStatus(t, "GET bob's link to alice's file", resp, body, http.StatusOK)
		ftfstest.SameBytes(t, small, body)
	})

	t.Run("head", func(t *testing.T) {
		resp, body := httpDo(t, http.MethodHead, clip, nil, "", nil)
		wantStatus(t, "HEAD", resp, body, http.StatusOK)
		if len(body) != 0 || resp.ContentLength != size {
			t.Fatalf("HEAD: %d body bytes, Content-Length %d; want none and %d", len(body), resp.ContentLength, size)
		}
	})

	t.Run("ranges", func(t *testing.T) {
		etag := strconv.Quote(ftfstest.Digest(video))
		for _, tc := range []struct {
			rng        string
			start, end int // inclusive
		}{
			{"bytes=0-99", 0, 99},
			{"bytes=524000-525000", 524000, 525000}, // across the first chunk's end
			{"bytes=-1000", size - 1000, size - 1},
			{"bytes=1000000-", 1000000, size - 1},
			{"bytes=0-", 0, size - 1},
			{fmt.Sprintf("bytes=%d-%d", size-1, size+500), size - 1, size - 1},
		} {
			resp, body := httpDo(t, http.MethodGet, clip, http.Header{"Range": {tc.rng}}, "", nil)
			wantStatus(t, tc.rng, resp, body, http.StatusPartialContent)
			ftfstest.SameBytes(t, video[tc.start:tc.end+1], body)
			if want := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end, size); resp.Header.Get("Content-Range") != want {
				t.Errorf("%s: Content-Range %q, want %q", tc.rng, resp.Header.Get("Content-Range"), want)
			}
		}
		resp, body := httpDo(t, http.MethodGet, clip, http.Header{"Range": {fmt.Sprintf("bytes=%d-", size)}}, "", nil)
		wantStatus(t, "a range past the end", resp, body, http.StatusRequestedRangeNotSatisfiable)
		if want := fmt.Sprintf("bytes */%d", size); resp.Header.Get("Content-Range") != want {
			t.Errorf("416: Content-Range %q, want %q", resp.Header.Get("Content-Range"), want)
		}
		resp, body = httpDo(t, http.MethodGet, clip, http.Header{"Range": {"bytes=10-19"}, "If-Range": {etag}}, "", nil)
		wantStatus(t, "If-Range with the ETag", resp, body, http.StatusPartialContent)
		ftfstest.SameBytes(t, video[10:20], body)
		resp, body = httpDo(t, http.MethodGet, clip, http.Header{"Range": {"bytes=10-19"}, "If-Range": {`"SHA-256=another"`}}, "", nil)
		wantStatus(t, "If-Range with another ETag", resp, body, http.StatusOK)
		ftfstest.SameBytes(t, video, body)
		resp, body = httpDo(t, http.MethodGet, clip, http.Header{"If-None-Match": {etag}}, "", nil)
		wantStatus(t, "If-None-Match with the ETag", resp, body, http.StatusNotModified)
	})

	t.Run("password", func(t *testing.T) {
		const pw = "correct horse battery"
		locked := link(share(t, alice, "notes.txt", client.ShareOptions{Password: pw}))
		resp, body := httpDo(t, http.MethodGet, locked, nil, "", nil)
		wantStatus(t, "without the password", resp, body, http.StatusUnauthorized)
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("401 without WWW-Authenticate Basic: %q", resp.Header.Get("WWW-Authenticate"))
		}
		resp, body = httpDo(t, http.MethodGet, locked, nil, "wrong password", nil)
		wantStatus(t, "with a wrong password", resp, body, http.StatusUnauthorized)
		resp, body = httpDo(t, http.MethodGet, locked, nil, pw, nil)
		wantStatus(t, "with the password", resp, body, http.StatusOK)
		ftfstest.SameBytes(t, small, body)
		// The password of one link opens no other: a link without one
		// ignores it, a link with another refuses it.
		other := link(share(t, alice, "notes.txt", client.ShareOptions{Password: "another password"}))
		resp, body = httpDo(t, http.MethodGet, other, nil, pw, nil)
		wantStatus(t, "another link's password", resp, body, http.StatusUnauthorized)
		// Wrong guesses lock the link: the right password is then refused
		// too, unchecked, even by a server that has seen it right before
		// (and so need not run bcrypt for it: fileserver/linkpass.go).
		for i := range 6 { // through both servers, most likely
			resp, body = httpDo(t, http.MethodGet, other, nil, "another password", nil)
			wantStatus(t, fmt.Sprintf("the right password, #%d", i), resp, body, http.StatusOK)
		}
		for range 12 {
			resp, _ = httpDo(t, http.MethodGet, other, nil, "guess", nil)
			if resp.StatusCode == http.StatusTooManyRequests {
				break
			}
		}
		wantStatus(t, "after many wrong passwords", resp, nil, http.StatusTooManyRequests)
		for i := range 4 {
			resp, body = httpDo(t, http.MethodGet, other, nil, "another password", nil)
			wantStatus(t, fmt.Sprintf("the right password on a throttled link, #%d", i), resp, body, http.StatusTooManyRequests)
		}
	})

	t.Run("expired", func(t *testing.T) {
		brief := link(share(t, alice, "notes.txt", client.ShareOptions{Expires: 2 * time.Second}))
		resp, body := httpDo(t, http.MethodGet, brief, nil, "", nil)
		if resp.StatusCode == http.StatusOK {
			ftfstest.SameBytes(t, small, body)
		} // a loaded machine may take the link's two seconds to get here
		ftfstest.Eventually(t, 30*time.Second, "the link expired", func() bool {
			resp, _ := httpDo(t, http.MethodGet, brief, nil, "", nil)
			return resp.StatusCode == http.StatusGone
		})
	})

	t.Run("revoked", func(t *testing.T) {
		info := share(t, alice, "notes.txt", client.ShareOptions{})
		u := link(info)
		resp, body := httpDo(t, http.MethodGet, u, nil, "", nil)
		wantStatus(t, "before revocation", resp, body, http.StatusOK)
		// Bob can neither see nor revoke Alice's link.
		if err := bob.Unshare(ctx, info.ID); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("bob revokes alice's link: %v, want ErrNotFound", err)
		}
		bobs, err := bob.Shares(ctx)
		if err != nil {
			t.Fatalf("bob's links: %v", err)
		}
		for _, s := range bobs {
			if s.Owner != "bob" {
				t.Fatalf("bob's list shows %s's link %s", s.Owner, s.ID)
			}
		}
		if err := alice.Unshare(ctx, info.ID); err != nil {
			t.Fatalf("revoke: %v", err)
		}
		resp, body = httpDo(t, http.MethodGet, u, nil, "", nil)
		wantStatus(t, "the next request after revocation", resp, body, http.StatusNotFound)
		shares, err := alice.Shares(ctx)
		if err != nil {
			t.Fatalf("alice's links: %v", err)
		}
		for _, s := range shares {
			if s.ID == info.ID {
				t.Fatalf("revoked link %s still listed", info.ID)
			}
		}
	})

	t.Run("file deleted", func(t *testing.T) {
		sys.PutRandom(t, alice, "doomed.bin", 1000)
		u := link(share(t, alice, "doomed.bin", client.ShareOptions{}))
		if err := alice.Delete(ctx, "doomed.bin"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		resp, body := httpDo(t, http.MethodGet, u, nil, "", nil)
		wantStatus(t, "a link to a deleted file", resp, body, http.StatusNotFound)
		// Put again, the name is shared again: the link names the file.
		again := sys.PutRandom(t, alice, "doomed.bin", 1000)
		resp, body = httpDo(t, http.MethodGet, u, nil, "", nil)
		wantStatus(t, "the name put again", resp, body, http.StatusOK)
		ftfstest.SameBytes(t, again, body)
	})

	t.Run("not links", func(t *testing.T) {
		resp, body := httpDo(t, http.MethodGet, gw+"/s/"+strings.Repeat("A", 43), nil, "", nil)
		wantStatus(t, "an unknown token", resp, body, http.StatusNotFound)
		resp, body = httpDo(t, http.MethodGet, gw+"/s/garbage", nil, "", nil)
		wantStatus(t, "a malformed token", resp, body, http.StatusNotFound)
		resp, body = httpDo(t, http.MethodDelete, clip, nil, "", nil)
		wantStatus(t, "DELETE", resp, body, http.StatusMethodNotAllowed)
		resp, body = httpDo(t, http.MethodPut, clip+"/x.bin", nil, "", []byte("x"))
		wantStatus(t, "PUT through a download link", resp, body, http.StatusMethodNotAllowed)
		if _, err := alice.Share(ctx, "no/such/file", client.ShareOptions{}); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("sharing a missing file: %v, want ErrNotFound", err)
		}
		if _, err := alice.Share(ctx, "notes.txt", client.ShareOptions{Expires: 31 * 24 * time.Hour}); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("a link for 31 days: %v, want ErrInvalid", err)
		}
		if _, err := alice.Share(ctx, "notes.txt", client.ShareOptions{Password: "short"}); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("a 5-character link password: %v, want ErrInvalid", err)
		}
	})

	t.Run("upload-only", func(t *testing.T) {
		info, err := alice.ShareUploads(ctx, "inbox", client.ShareOptions{})
		if err != nil {
			t.Fatalf("share --upload-only inbox: %v", err)
		}
		u := link(info)
		note := []byte("from someone without an account\n")
		resp, body := httpDo(t, http.MethodPut, u+"/note.txt", nil, "", note)
		wantStatus(t, "PUT a small file", resp, body, http.StatusCreated)
		big := ftfstest.RandomBytes(3*subjects.ChunkSize + 777) // an upload, not a put
		resp, body = httpDo(t, http.MethodPut, u+"/deep/big.bin", nil, "", big)
		wantStatus(t, "PUT a large file", resp, body, http.StatusCreated)
		for name, want := range map[string][]byte{"inbox/note.txt": note, "inbox/deep/big.bin": big} {
			fi, err := alice.Stat(ctx, name)
			if err != nil || fi.Owner != "alice" {
				t.Fatalf("stat %s: %+v %v: want a file of the sharer's", name, fi, err)
			}
			ftfstest.SameBytes(t, want, ftfstest.GetBytes(t, alice, name))
		}
		resp, body = httpDo(t, http.MethodPut, u+"/note.txt", nil, "", []byte("replaced"))
		wantStatus(t, "PUT over an existing file", resp, body, http.StatusConflict)
		resp, body = httpDo(t, http.MethodPut, u+"/deep/big.bin", nil, "", big[:subjects.ChunkSize+1])
		wantStatus(t, "PUT a large file over an existing one", resp, body, http.StatusConflict)
		ftfstest.SameBytes(t, note, ftfstest.GetBytes(t, alice, "inbox/note.txt"))
		resp, body = httpDo(t, http.MethodGet, u, nil, "", nil)
		wantStatus(t, "GET through an upload-only link", resp, body, http.StatusMethodNotAllowed)
		resp, body = httpDo(t, http.MethodGet, u+"/note.txt", nil, "", nil)
		wantStatus(t, "GET a file through an upload-only link", resp, body, http.StatusMethodNotAllowed)
		resp, body = httpDo(t, http.MethodPut, u+"/a%5Cb.txt", nil, "", note)
		wantStatus(t, "PUT a name with a backslash", resp, body, http.StatusBadRequest)
		// A body of unknown length would make a relayed upload, whose
		// chunk subjects are not the gateway's.
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, u+"/stream.txt", io.MultiReader(bytes.NewReader(note)))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("PUT without a length: %v", err)
		}
		resp.Body.Close()
		wantStatus(t, "PUT without a length", resp, nil, http.StatusLengthRequired)
		if logs := sys.Logs("primary") + sys.Logs("backup"); !strings.Contains(logs, "file added through link") {
			t.Errorf("no audit line for the files added through the link")
		}
	})

	t.Run("access rules", func(t *testing.T) {
		secret := []byte("alice's eyes only\n")
		if _, err := alice.Put(ctx, "home/alice/secret.txt", bytes.NewReader(secret), int64(len(secret))); err != nil {
			t.Fatalf("put in alice's home: %v", err)
		}
		if _, err := bob.Share(ctx, "home/alice/secret.txt", client.ShareOptions{}); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("bob shares a file in alice's home: %v, want ErrForbidden", err)
		}
		if _, err := bob.ShareUploads(ctx, "home/alice/drop", client.ShareOptions{}); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("bob makes an upload link into alice's home: %v, want ErrForbidden", err)
		}
		down := link(share(t, alice, "home/alice/secret.txt", client.ShareOptions{}))
		info, err := alice.ShareUploads(ctx, "home/alice/drop", client.ShareOptions{})
		if err != nil {
			t.Fatalf("alice makes an upload link into her home: %v", err)
		}
		up := link(info)
		resp, body := httpDo(t, http.MethodGet, down, nil, "", nil)
		wantStatus(t, "GET alice's shared secret", resp, body, http.StatusOK)
		resp, body = httpDo(t, http.MethodPut, up+"/one.txt", nil, "", []byte("one"))
		wantStatus(t, "PUT into alice's drop", resp, body, http.StatusCreated)

		// Alice takes read and write in her home from herself: both links
		// open nothing from the next request on, and open again when the
		// rule goes.
		if _, err := alice.SetAccess(ctx, "home/alice/", "list,delete,admin: alice"); err != nil {
			t.Fatalf("alice narrows her home's rule: %v", err)
		}
		resp, body = httpDo(t, http.MethodGet, down, nil, "", nil)
		wantStatus(t, "GET after the sharer lost read", resp, body, http.StatusNotFound)
		resp, body = httpDo(t, http.MethodPut, up+"/two.txt", nil, "", []byte("two"))
		wantStatus(t, "PUT after the sharer lost write", resp, body, http.StatusNotFound)
		if err := alice.RemoveAccess(ctx, "home/alice/"); err != nil {
			t.Fatalf("alice drops her home's rule: %v", err)
		}
		resp, body = httpDo(t, http.MethodGet, down, nil, "", nil)
		wantStatus(t, "GET once the rule is gone", resp, body, http.StatusOK)
		if !bytes.Equal(body, secret) {
			t.Fatalf("GET once the rule is gone: %q, want %q", body, secret)
		}
		if _, err := alice.Stat(ctx, "home/alice/drop/two.txt"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("stat of the file PUT while refused: %v, want ErrNotFound", err)
		}
	})

	t.Run("cli", func(t *testing.T) {
		cli := sys.AdminCLI(t)
		if _, stderr, code := cli.Run(t, strings.NewReader(""), nil, "put", "-", "cli.txt"); code != 0 {
			t.Fatalf("put: exit %d: %s", code, stderr)
		}
		out, said, code := cli.Run(t, nil, nil, "share", "cli.txt", "--gateway-url", gw, "--expire", "1h")
		if code != 0 {
			t.Fatalf("share: exit %d: %s", code, said)
		}
		u := strings.TrimSpace(out)
		tokens = append(tokens, strings.TrimPrefix(u, gw+"/s/"))
		resp, body := httpDo(t, http.MethodGet, u, nil, "", nil)
		wantStatus(t, "GET the CLI's link "+u, resp, body, http.StatusOK)
		ls, stderr, code := cli.Run(t, nil, nil, "share", "ls", "--json")
		if code != 0 {
			t.Fatalf("share ls: exit %d: %s", code, stderr)
		}
		id := ""
		for _, f := range strings.Fields(said) {
			f = strings.TrimSuffix(f, ":")
			if len(f) == 10 && strings.Contains(ls, `"id": "`+f+`"`) {
				id = f
			}
		}
		if id == "" || !strings.Contains(ls, `"name": "cli.txt"`) {
			t.Fatalf("share ls --json does not list the link of %q:\n%s", said, ls)
		}
		if _, stderr, code := cli.Run(t, nil, nil, "share", "rm", id); code != 0 {
			t.Fatalf("share rm %s: exit %d: %s", id, code, stderr)
		}
		resp, body = httpDo(t, http.MethodGet, u, nil, "", nil)
		wantStatus(t, "GET after `share rm`", resp, body, http.StatusNotFound)
		if _, _, code := cli.Run(t, nil, nil, "share", "cli.txt", "--expire", "0s"); code != 2 {
			t.Errorf("share --expire 0s: exit %d, want 2", code)
		}
	})

	t.Run("audit without secrets", func(t *testing.T) {
		logs := sys.Logs("primary") + sys.Logs("backup")
		if !strings.Contains(logs, "link used") || !strings.Contains(logs, "link created") || !strings.Contains(logs, "link revoked") {
			t.Fatalf("the file servers' logs lack the links' audit lines")
		}
		for _, name := range []string{"primary", "backup", "gateway1", "broker1"} {
			l := sys.Logs(name)
			for _, tok := range tokens {
				if strings.Contains(l, tok) {
					t.Fatalf("%s's log holds a link token", name)
				}
			}
			if strings.Contains(l, "correct horse battery") {
				t.Fatalf("%s's log holds a link password", name)
			}
		}
	})
}

// TestGatewayIdentityIsLeastPrivilege is what an attacker would try with
// the gateway's identity, and with a user's against the gateway's: the
// gateway may send link requests and read its own inbox, nothing else; a
// user may not send link requests as the gateway, nor use a link itself;
// nobody may take the gateway's name or connect as it without its secret.
func TestGatewayIdentityIsLeastPrivilege(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary"))
	sys.AddUser(t, "alice")
	alice := sys.Login(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sys.PutRandom(t, alice, "secret.txt", 100)
	info := share(t, alice, "secret.txt", client.ShareOptions{})

	if _, err := sys.Connect(nats.UserInfo(subjects.GatewayUser, "not the secret")); err == nil {
		t.Fatal("a gateway connection with a wrong secret was let in")
	}
	admin := sys.Login(t, "admin")
	if err := admin.AddUser(ctx, subjects.GatewayUser, "a long password", false); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("adding a user named %s: %v, want ErrInvalid", subjects.GatewayUser, err)
	}

	var broker violations
	collect := broker.handler()
	gwc, err := sys.Connect(nats.UserInfo(subjects.GatewayUser, sys.GatewayPassword), nats.CustomInboxPrefix(subjects.Inbox(subjects.GatewayUser)), collect)
	if err != nil {
		t.Fatalf("the gateway's identity: %v", err)
	}
	defer gwc.Close()
	for _, subj := range []string{
		subjects.For(subjects.GatewayUser, subjects.List), subjects.For(subjects.GatewayUser, subjects.Get),
		subjects.For(subjects.GatewayUser, subjects.Login), subjects.For(subjects.GatewayUser, subjects.ShareCreate),
		subjects.For("alice", subjects.List), subjects.For("alice", subjects.Link(subjects.Get)),
		subjects.DiscoveryPing, subjects.ServerGone, "$JS.API.STREAM.LIST", subjects.DownloadImport,
	} {
		broker.refused(t, "the gateway publishing to "+subj, func() error {
			if err := gwc.Publish(subj, []byte("{}")); err != nil {
				return err
			}
			return gwc.FlushTimeout(2 * time.Second)
		})
	}
	for _, subj := range []string{subjects.Inbox("alice") + ".>", subjects.Prefix + ".>", "_INBOX.>", ">"} {
		broker.refused(t, "the gateway subscribing to "+subj, func() error {
			sub, err := gwc.SubscribeSync(subj)
			if err != nil {
				return err
			}
			defer sub.Unsubscribe()
			return gwc.FlushTimeout(2 * time.Second)
		})
	}
	// What it may do: a link request, answered into its own inbox.
	m := nats.NewMsg(subjects.For(subjects.GatewayUser, subjects.LinkInfo))
	m.Header.Set(subjects.HeaderLink, info.Token)
	m.Data = []byte("{}")
	reply, err := gwc.RequestMsg(m, 10*time.Second)
	if err != nil || reply.Header.Get(subjects.HeaderErrorCode) != "" || !strings.Contains(string(reply.Data), "secret.txt") {
		t.Fatalf("the gateway's own link request: %v %v %s", err, reply.Header, reply.Data)
	}
	// A session token as a link token, and a link request with a session.
	m = nats.NewMsg(subjects.For(subjects.GatewayUser, subjects.Link(subjects.Get)))
	m.Header.Set(subjects.HeaderSession, alice.Token())
	m.Data = []byte(`{"name":"secret.txt"}`)
	if reply, err = gwc.RequestMsg(m, 10*time.Second); err != nil || reply.Header.Get(subjects.HeaderErrorCode) != string(subjects.CodeNotFound) {
		t.Fatalf("a link request with a session instead of a link: %v %v", err, reply.Header)
	}
	// A link's request for another file than the link's.
	sys.PutRandom(t, alice, "other.txt", 100)
	m = nats.NewMsg(subjects.For(subjects.GatewayUser, subjects.Link(subjects.Get)))
	m.Header.Set(subjects.HeaderLink, info.Token)
	m.Data = []byte(`{"name":"other.txt"}`)
	if reply, err = gwc.RequestMsg(m, 10*time.Second); err != nil || reply.Header.Get(subjects.HeaderErrorCode) != string(subjects.CodeForbidden) || len(reply.Data) != 0 {
		t.Fatalf("a link to secret.txt asked for other.txt: %v %v %d bytes", err, reply.Header, len(reply.Data))
	}

	// An upload-only link's requests outside its folder, or replacing a
	// file, or a download through it.
	inbox, err := alice.ShareUploads(ctx, "inbox", client.ShareOptions{})
	if err != nil {
		t.Fatalf("upload-only link: %v", err)
	}
	for _, tc := range []struct {
		subject, body string
		header        nats.Header
	}{
		{subjects.Link(subjects.UploadOpen), `{"name":"elsewhere.bin","size":1000000,"direct":true}`, nil},
		{subjects.Link(subjects.UploadOpen), `{"name":"inbox2/x.bin","size":1000000,"direct":true}`, nil},
		{subjects.Link(subjects.UploadOpen), `{"name":"inbox/x.bin","size":1000000,"direct":true,"overwrite":true}`, nil},
		{subjects.Link(subjects.Put), "x", nats.Header{subjects.HeaderPut: {`{"name":"secret.txt","size":1,"digest":"` + ftfstest.Digest([]byte("x")) + `"}`}}},
		{subjects.Link(subjects.Put), "x", nats.Header{subjects.HeaderPut: {`{"name":"inbox/y.txt","size":1,"overwrite":true,"digest":"` + ftfstest.Digest([]byte("x")) + `"}`}}},
		{subjects.Link(subjects.Get), `{"name":"inbox/y.txt"}`, nil},
		{subjects.Link(subjects.Stat), `{"name":"secret.txt"}`, nil},
	} {
		m := nats.NewMsg(subjects.For(subjects.GatewayUser, tc.subject))
		m.Header = nats.Header{}
		for k, v := range tc.header {
			m.Header[k] = v
		}
		m.Header.Set(subjects.HeaderLink, inbox.Token)
		m.Data = []byte(tc.body)
		reply, err := gwc.RequestMsg(m, 10*time.Second)
		if err != nil || reply.Header.Get(subjects.HeaderErrorCode) != string(subjects.CodeForbidden) {
			t.Errorf("%s %s through an upload-only link to inbox/: %v %v, want %s", tc.subject, tc.body, err, reply.Header, subjects.CodeForbidden)
		}
	}
	if _, err := alice.Stat(ctx, "inbox/y.txt"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("inbox/y.txt: %v, want ErrNotFound", err)
	}

	// Alice's own connection: link requests as the gateway are refused by
	// the broker, and in her own name by the file servers.
	anc, err := sys.Connect(nats.Token(alice.Token()), nats.CustomInboxPrefix(subjects.Inbox("alice")), collect)
	if err != nil {
		t.Fatalf("alice's raw connection: %v", err)
	}
	defer anc.Close()
	broker.refused(t, "alice publishing as the gateway", func() error {
		if err := anc.Publish(subjects.For(subjects.GatewayUser, subjects.LinkInfo), []byte("{}")); err != nil {
			return err
		}
		return anc.FlushTimeout(2 * time.Second)
	})
	broker.refused(t, "alice reading the gateway's inbox", func() error {
		sub, err := anc.SubscribeSync(subjects.Inbox(subjects.GatewayUser) + ".>")
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		return anc.FlushTimeout(2 * time.Second)
	})
	m = nats.NewMsg(subjects.For("alice", subjects.LinkInfo))
	m.Header.Set(subjects.HeaderLink, info.Token)
	m.Data = []byte("{}")
	if reply, err = anc.RequestMsg(m, 10*time.Second); err != nil || reply.Header.Get(subjects.HeaderErrorCode) != string(subjects.CodeForbidden) {
		t.Fatalf("alice using a link over her own connection: %v %v", err, reply.Header)
	}
}

// TestShareLinkFailover: a download through a gateway that is killed is
// resumed with a Range request through another gateway, byte for byte;
// a download whose file server is killed, and an upload whose file server
// is killed, complete through the same gateway.
func TestShareLinkFailover(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	sys.AddUser(t, "alice")
	alice := sys.Login(t, "alice")
	gw1 := sys.StartGateway(t, "gateway1")
	gw2 := sys.StartGateway(t, "gateway2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Larger than what the sockets between the gateway and the HTTP
	// client can hold while the client does not read.
	const size = 48 << 20
	data := sys.PutRandom(t, alice, "big.bin", size)
	info := share(t, alice, "big.bin", client.ShareOptions{})

	// start opens a download through gw and reads its first MiB.
	start := func(gw string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw+"/s/"+info.Token, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET through %s: %v %v", gw, err, resp)
		}
		first := make([]byte, 1<<20)
		if _, err := io.ReadFull(resp.Body, first); err != nil {
			t.Fatalf("read the first MiB: %v", err)
		}
		return resp, first
	}

	t.Run("gateway killed, resumed through another", func(t *testing.T) {
		resp, got := start(gw1)
		etag := resp.Header.Get("ETag")
		sys.Kill(t, "gateway1")
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = append(got, rest...)
		if err == nil || len(got) >= size {
			t.Fatalf("the download through the killed gateway ended with %v after %d of %d bytes: want it broken off", err, len(got), size)
		}
		t.Logf("%d bytes came before the gateway died; resuming", len(got))
		resp2, body := httpDo(t, http.MethodGet, gw2+"/s/"+info.Token, http.Header{"Range": {fmt.Sprintf("bytes=%d-", len(got))}, "If-Range": {etag}}, "", nil)
		wantStatus(t, "the resumed download", resp2, body, http.StatusPartialContent)
		ftfstest.SameBytes(t, data, append(got, body...))
	})

	t.Run("file server killed mid-download", func(t *testing.T) {
		resp, got := start(gw2)
		sys.Kill(t, "primary")
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("the download after the file server's death: %v after %d bytes", err, len(got)+len(rest))
		}
		ftfstest.SameBytes(t, data, append(got, rest...))
	})

	t.Run("file server killed mid-upload", func(t *testing.T) {
		sys.Restart(t, "primary")
		sys.WaitServers(t, "primary")
		inbox, err := alice.ShareUploads(ctx, "inbox", client.ShareOptions{})
		if err != nil {
			t.Fatalf("upload-only link: %v", err)
		}
		up := ftfstest.RandomBytes(16 << 20)
		pr, pw := io.Pipe()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, gw2+"/s/"+inbox.Token+"/big.bin", pr)
		req.ContentLength = int64(len(up))
		done := make(chan error, 1)
		var resp *http.Response
		go func() {
			var err error
			resp, err = http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		if _, err := pw.Write(up[:4<<20]); err != nil {
			t.Fatalf("send the first 4 MiB: %v", err)
		}
		sys.Kill(t, "backup")
		if _, err := pw.Write(up[4<<20:]); err != nil {
			t.Fatalf("send the rest: %v", err)
		}
		pw.Close()
		if err := <-done; err != nil {
			t.Fatalf("PUT: %v", err)
		}
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT after the file server's death: status %d", resp.StatusCode)
		}
		ftfstest.SameBytes(t, up, ftfstest.GetBytes(t, alice, "inbox/big.bin"))
	})

	t.Run("gateway stopped mid-download finishes it", func(t *testing.T) {
		resp, got := start(gw2)
		read := make(chan error, 1)
		go func() {
			rest, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = append(got, rest...)
			read <- err
		}()
		sys.Stop(t, "gateway2") // SIGTERM, and waits for the process to end
		if err := <-read; err != nil {
			t.Fatalf("the download through a gateway stopped with SIGTERM: %v after %d bytes", err, len(got))
		}
		ftfstest.SameBytes(t, data, got)
		if !strings.Contains(sys.Logs("gateway2"), "gateway stopped") {
			t.Errorf("gateway2 did not log its orderly stop")
		}
	})
}

// TestShareLinkRangesSeek: a range starts at the chunk holding its first
// byte when the file's chunks lie together in storage, and reads from the
// start otherwise; both give the right bytes through a gateway.
func TestShareLinkRangesSeek(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary"))
	sys.AddUser(t, "alice")
	alice := sys.Login(t, "alice")
	gw := sys.StartGateway(t, "gateway1")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const chunk = subjects.ChunkSize
	together := sys.PutRandom(t, alice, "together.bin", 6*chunk+100)
	// A file with another's chunk and meta between its third and fourth
	// chunks: its own are not contiguous. Its size is unknown (a pipe), so
	// its server stores each chunk as it comes; the stream's last
	// sequence tells when the first three are in.
	js, err := jetstream.New(sys.ServiceConn(t))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, subjects.ObjectStream(subjects.FilesBucket))
	if err != nil {
		t.Fatalf("files stream: %v", err)
	}
	lastSeq := func() uint64 {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatalf("files stream info: %v", err)
		}
		return info.State.LastSeq
	}
	before := lastSeq()
	apart := ftfstest.RandomBytes(6*chunk + 100)
	pr, pw := io.Pipe()
	put := make(chan error, 1)
	go func() {
		_, err := alice.Put(ctx, "apart.bin", pr, -1)
		put <- err
	}()
	if _, err := pw.Write(apart[:3*chunk]); err != nil {
		t.Fatalf("write the first chunks: %v", err)
	}
	ftfstest.Eventually(t, time.Minute, "the first three chunks stored", func() bool { return lastSeq() >= before+3 })
	sys.PutRandom(t, alice, "wedge.txt", 10)
	if _, err := pw.Write(apart[3*chunk:]); err != nil {
		t.Fatalf("write the rest: %v", err)
	}
	pw.Close()
	if err := <-put; err != nil {
		t.Fatalf("put apart.bin: %v", err)
	}

	links := map[string]client.ShareInfo{"together.bin": share(t, alice, "together.bin", client.ShareOptions{}), "apart.bin": share(t, alice, "apart.bin", client.ShareOptions{})}

	// The file server's answer to a seek, as the gateway gets it.
	gwc, err := sys.Connect(nats.UserInfo(subjects.GatewayUser, sys.GatewayPassword), nats.CustomInboxPrefix(subjects.Inbox(subjects.GatewayUser)))
	if err != nil {
		t.Fatalf("the gateway's identity: %v", err)
	}
	defer gwc.Close()
	seek := func(name string, offset int64) *nats.Msg {
		t.Helper()
		fi, err := alice.Stat(ctx, name)
		if err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		inbox := gwc.NewInbox()
		sub, err := gwc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		m := nats.NewMsg(subjects.For(subjects.GatewayUser, subjects.Link(subjects.Download)))
		m.Reply = inbox
		m.Header.Set(subjects.HeaderLink, links[name].Token)
		m.Data = fmt.Appendf(nil, `{"name":%q,"version":%q,"after":0,"offset":%d,"max":1,"seek":true}`, name, fi.Version, offset)
		if err := gwc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		for {
			reply, err := sub.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("seek in %s: %v", name, err)
			}
			if reply.Header.Get(subjects.HeaderStatus) == "100" {
				continue // a keepalive
			}
			return reply
		}
	}
	if m := seek("together.bin", 4*chunk+5); m.Header.Get(subjects.HeaderErrorCode) != "" || !bytes.Equal(m.Data, together[4*chunk:5*chunk]) {
		t.Fatalf("a seek to chunk 4 of a file stored alone: %v, %d bytes; want chunk 4", m.Header, len(m.Data))
	}
	if m := seek("apart.bin", 4*chunk+5); m.Header.Get(subjects.HeaderErrorReason) != string(subjects.ReasonNotContiguous) {
		t.Fatalf("a seek in a file whose chunks are apart: %v, %d bytes; want %s", m.Header, len(m.Data), subjects.ReasonNotContiguous)
	}

	for name, data := range map[string][]byte{"together.bin": together, "apart.bin": apart} {
		u := gw + "/s/" + links[name].Token
		size := len(data)
		for _, r := range [][2]int{{4*chunk + 5, 4*chunk + 5000}, {chunk - 1, 3*chunk + 1}, {size - 10, size - 1}, {5 * chunk, size - 1}} {
			resp, body := httpDo(t, http.MethodGet, u, http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", r[0], r[1])}}, "", nil)
			wantStatus(t, name+" range", resp, body, http.StatusPartialContent)
			ftfstest.SameBytes(t, data[r[0]:r[1]+1], body)
		}
	}
}

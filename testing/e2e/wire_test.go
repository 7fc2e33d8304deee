package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestBadRequestsAtTheWire sends every request subject what a careless or
// hostile program might, raw, as the NATS CLI would: truncated and invalid
// JSON, unknown and missing fields, no session or a forged one, chunks out
// of order, repeated, too large, for unknown, aborted and committed
// uploads, commits whose size or digest do not match, download positions
// outside the file. Each gets its own wire error (code, and reason where
// one is defined); none stores anything or disturbs another user, whose
// uploads and downloads run meanwhile; and afterwards every user's good
// requests are answered. Each request is a case of one table, run as its
// own subtest in order (some depend on the ones before); what takes set-up
// or several requests follows as subtests of its own.
func TestBadRequestsAtTheWire(t *testing.T) {
	t.Parallel() // see doc.go
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	malloryPassword := sys.AddUser(t, "mallory")
	sys.AddUser(t, "carol")
	mallory := sys.Login(t, "mallory")
	carol := sys.Login(t, "carol")
	m := dialWire(t, sys, mallory)
	a := dialWire(t, sys, sys.Login(t, "admin"))

	keep := sys.PutRandom(t, mallory, "keep.txt", 3000)
	keepInfo := wireStat(t, mallory, "keep.txt")

	// Carol uploads and downloads the whole time.
	stop := make(chan struct{})
	carolDone := make(chan bystanderReport, 1)
	go func() { carolDone <- bystanderTransfers(carol, stop) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-carolDone
		}
	}()

	// Well-formed bodies: the bad variants of each must not take effect,
	// and some would do damage if they did.
	download := fmt.Sprintf(`{"name":"keep.txt","version":%q,"after":0,"max":1}`, keepInfo.Version)
	endpoints := []wireEndpoint{
		{subjects.Login, m, fmt.Sprintf(`{"user":"mallory","password":%q}`, malloryPassword), true},
		{subjects.Logout, m, `{}`, false},
		{subjects.WhoAmI, m, `{}`, false},
		{subjects.List, m, `{"prefix":"keep","limit":10}`, false},
		{subjects.Stat, m, `{"name":"keep.txt"}`, false},
		{subjects.Watch, m, `{"prefix":"keep","now":true}`, false},
		{subjects.Delete, m, `{"name":"keep.txt"}`, false},
		{subjects.Rename, m, `{"from":"keep.txt","to":"phantom-renamed.txt"}`, false},
		{subjects.UploadOpen, m, `{"name":"phantom.bin","size":3}`, false},
		{subjects.UploadResume, m, `{"upload":"NOSUCHUPLOAD"}`, false},
		{subjects.UploadCommit, m, `{"upload":"NOSUCHUPLOAD","size":3,"digest":"SHA-256=x"}`, false},
		{subjects.UploadAbort, m, `{"upload":"NOSUCHUPLOAD"}`, false},
		{subjects.Download, m, download, false},
		{subjects.Get, m, `{"name":"keep.txt"}`, false},
		{subjects.Status, m, `{}`, false},
		{subjects.UserAdd, a, `{"user":"phantom","password":"phantom-password"}`, false},
		{subjects.UserRemove, a, `{"user":"carol"}`, false},
		{subjects.UserPassword, a, `{"user":"carol","password":"changed-password"}`, false},
		{subjects.UserList, a, `{}`, false},
		{subjects.ReplicaList, m, `{}`, false},
		{subjects.ReplicaStat, m, `{"name":"keep.txt"}`, false},
		{subjects.ReplicaDownload, m, download, false},
	}
	var cases []wireCase
	for _, e := range endpoints {
		cases = append(cases, e.malformed()...)
	}

	inv := func(as *wireUser, subject, body string, reason subjects.Reason) wireCase {
		return wireCase{as: as, subject: subject, body: body, code: subjects.CodeInvalid, reason: reason}
	}
	ok := func(as *wireUser, subject, body string) wireCase {
		return wireCase{as: as, subject: subject, body: body}
	}
	is := func(as *wireUser, subject, body string, code subjects.Code) wireCase {
		return wireCase{as: as, subject: subject, body: body, code: code}
	}
	cases = append(cases,
		// Good requests, so that the refusals above are not the only
		// answer the service knows; an empty body is {}.
		ok(m, subjects.WhoAmI, ``),
		ok(m, subjects.WhoAmI, `{}`),
		ok(m, subjects.List, ``),
		ok(m, subjects.Stat, `{"name":"keep.txt"}`),
		ok(m, subjects.Download, download).named("download of keep.txt"),
		ok(m, subjects.Get, `{"name":"keep.txt"}`),
		is(m, subjects.Get, `{"name":"phantom.bin"}`, subjects.CodeNotFound),
		inv(m, subjects.Get, `{"name":"../keep.txt"}`, subjects.ReasonNameDotSegment),
		ok(m, subjects.ReplicaList, ``),
		ok(a, subjects.UserList, ``),

		// Missing and empty fields, values out of range or of the wrong
		// type, bad names.
		inv(m, subjects.Login, `{"user":"mallory"}`, subjects.ReasonMissingField),
		inv(m, subjects.Login, `{"password":"whatever-it-is"}`, subjects.ReasonMissingField),
		inv(m, subjects.Login, `{"user":"mallory","password":""}`, subjects.ReasonMissingField),
		inv(m, subjects.Login, `{"user":"mallory","password":12345678}`, subjects.ReasonWrongType),
		is(m, subjects.Login, `{"user":"mallory","password":"not-the-password"}`, subjects.CodeUnauthorized),
		inv(m, subjects.Stat, ``, subjects.ReasonMissingField),
		inv(m, subjects.Stat, `{}`, subjects.ReasonMissingField),
		inv(m, subjects.Stat, `{"name":""}`, subjects.ReasonMissingField),
		inv(m, subjects.Stat, `{"name":7}`, subjects.ReasonWrongType),
		inv(m, subjects.Stat, `{"name":"a\u0000b"}`, subjects.ReasonNameControlChar),
		is(m, subjects.Stat, `{"name":"phantom.bin"}`, subjects.CodeNotFound),
		inv(m, subjects.List, `{"limit":-1}`, subjects.ReasonOutOfRange),
		inv(m, subjects.Watch, `{"after":1,"wait":-1}`, subjects.ReasonOutOfRange),
		inv(m, subjects.Watch, `{"after":-1}`, subjects.ReasonWrongType),
		inv(m, subjects.Watch, `{"prefix":"`+strings.Repeat("p", subjects.MaxNameLen+1)+`"}`, subjects.ReasonNameTooLong),
		// A wait of an hour, after a sequence no change reaches, is held
		// no longer than the servers' bound: answered within 15 s.
		ok(m, subjects.Watch, `{"after":4611686018427387904,"wait":3600000000000}`).named("watch held an hour"),
		inv(m, subjects.List, `{"prefix":1}`, subjects.ReasonWrongType),
		inv(m, subjects.Delete, `{}`, subjects.ReasonMissingField),
		inv(m, subjects.Delete, `{"name":"/etc/passwd"}`, subjects.ReasonNameAbsolute),
		inv(m, subjects.Delete, `{"name":"keep.txt/"}`, subjects.ReasonNameTrailingSlash),
		inv(m, subjects.Rename, `{"to":"phantom-renamed.txt"}`, subjects.ReasonMissingField),
		inv(m, subjects.Rename, `{"from":"keep.txt"}`, subjects.ReasonMissingField),
		inv(m, subjects.Rename, `{"from":"keep.txt","to":"../phantom"}`, subjects.ReasonNameDotSegment),
		// Invisible format characters: "keep\u200b.txt" would pass for
		// "keep.txt", "a\u202etxt.exe" show as "aexe.txt".
		inv(m, subjects.Rename, `{"from":"keep.txt","to":"keep\u200b.txt"}`, subjects.ReasonNameFormatChar),
		inv(m, subjects.UploadOpen, `{"name":"a\u202etxt.exe","size":3}`, subjects.ReasonNameFormatChar),
		inv(m, subjects.Rename, `{"from":"keep.txt","to":"keep.txt"}`, ""),
		inv(m, subjects.Rename, `{"from":"keep.txt","to":"phantom","overwrite":"yes"}`, subjects.ReasonWrongType),
		inv(m, subjects.UploadOpen, `{"size":3}`, subjects.ReasonMissingField),
		inv(m, subjects.UploadOpen, `{"name":"phantom.bin","size":-2}`, subjects.ReasonOutOfRange),
		inv(m, subjects.UploadOpen, `{"name":"phantom.bin","size":"3"}`, subjects.ReasonWrongType),
		inv(m, subjects.UploadOpen, `{"name":"a//phantom.bin","size":3}`, subjects.ReasonNameEmptySegment),
		inv(m, subjects.UploadOpen, `{"name":"a\\phantom.bin","size":3}`, subjects.ReasonNameBackslash),
		is(m, subjects.UploadOpen, `{"name":"keep.txt","size":3}`, subjects.CodeConflict),
		inv(m, subjects.UploadResume, `{}`, subjects.ReasonMissingField),
		inv(m, subjects.UploadResume, `{"upload":""}`, subjects.ReasonMissingField),
		is(m, subjects.UploadResume, `{"upload":"NOSUCHUPLOAD"}`, subjects.CodeNotFound),
		is(m, subjects.UploadResume, `{"upload":"a.b.>"}`, subjects.CodeNotFound),
		inv(m, subjects.UploadCommit, `{"size":3,"digest":"SHA-256=x"}`, subjects.ReasonMissingField),
		inv(m, subjects.UploadCommit, `{"upload":"NOSUCHUPLOAD","size":3}`, subjects.ReasonMissingField),
		inv(m, subjects.UploadCommit, `{"upload":"NOSUCHUPLOAD","size":-1,"digest":"SHA-256=x"}`, subjects.ReasonOutOfRange),
		is(m, subjects.UploadCommit, `{"upload":"NOSUCHUPLOAD","size":3,"digest":"SHA-256=x"}`, subjects.CodeNotFound),
		inv(m, subjects.UploadAbort, `{}`, subjects.ReasonMissingField),
		ok(m, subjects.UploadAbort, `{"upload":"NOSUCHUPLOAD"}`), // gone already: aborting is idempotent

		// Download positions outside the file.
		inv(m, subjects.Download, `{"version":"v"}`, subjects.ReasonMissingField),
		inv(m, subjects.Download, `{"name":"keep.txt"}`, subjects.ReasonMissingField),
		is(m, subjects.Download, `{"name":"keep.txt","version":"NOTTHEVERSION"}`, subjects.CodeConflict),
		is(m, subjects.Download, `{"name":"phantom.bin","version":"v"}`, subjects.CodeNotFound),
		inv(m, subjects.Download, fmt.Sprintf(`{"name":"keep.txt","version":%q,"offset":-1}`, keepInfo.Version), subjects.ReasonBadOffset).named("download from offset -1"),
		inv(m, subjects.Download, fmt.Sprintf(`{"name":"keep.txt","version":%q,"offset":%d}`, keepInfo.Version, keepInfo.Size+1), subjects.ReasonBadOffset).named("download from past the end"),
		inv(m, subjects.Download, fmt.Sprintf(`{"name":"keep.txt","version":%q,"after":%d}`, keepInfo.Version, uint64(1)<<40), subjects.ReasonBadOffset).named("download after chunk 2^40"),
		inv(m, subjects.Download, fmt.Sprintf(`{"name":"keep.txt","version":%q,"after":%d}`, keepInfo.Version, uint64(math.MaxUint64)), subjects.ReasonBadOffset).named("download after chunk 2^64-1"),
		inv(m, subjects.Download, fmt.Sprintf(`{"name":"keep.txt","version":%q,"after":-1}`, keepInfo.Version), subjects.ReasonWrongType).named("download after chunk -1"),
		inv(m, subjects.Download, fmt.Sprintf(`{"name":"keep.txt","version":%q,"max":-1}`, keepInfo.Version), subjects.ReasonOutOfRange).named("download of at most -1 chunks"),
		inv(m, subjects.ReplicaDownload, fmt.Sprintf(`{"name":"keep.txt","version":%q,"offset":-1}`, keepInfo.Version), subjects.ReasonBadOffset).named("replica.download from offset -1"),

		// User administration: fields, and who may.
		inv(a, subjects.UserAdd, `{"password":"phantom-password"}`, subjects.ReasonMissingField),
		inv(a, subjects.UserAdd, `{"user":"Phantom","password":"phantom-password"}`, ""),
		inv(a, subjects.UserAdd, `{"user":"phantom","password":"short"}`, ""),
		inv(a, subjects.UserAdd, `{"user":"phantom","password":"phantom-password","admin":"yes"}`, subjects.ReasonWrongType),
		inv(a, subjects.UserRemove, `{}`, subjects.ReasonMissingField),
		is(a, subjects.UserRemove, `{"user":"nobody"}`, subjects.CodeNotFound),
		inv(a, subjects.UserPassword, `{"password":"changed-password"}`, subjects.ReasonMissingField),
		inv(a, subjects.UserPassword, `{"user":"carol","password":"short"}`, ""),
		inv(a, subjects.UserList, `{"user":"carol"}`, subjects.ReasonUnknownField),
		is(m, subjects.UserAdd, `{"user":"phantom","password":"phantom-password"}`, subjects.CodeForbidden),
		is(m, subjects.UserRemove, `{"user":"carol"}`, subjects.CodeForbidden),
		is(m, subjects.UserPassword, `{"user":"carol","password":"changed-password"}`, subjects.CodeForbidden),
		is(m, subjects.UserList, `{}`, subjects.CodeForbidden),
	)
	// Puts in one request: the request in a header, the content the body.
	content := ftfstest.RandomBytes(3000)
	put := func(name string, as *wireUser, header string, body []byte, code subjects.Code, reason subjects.Reason) wireCase {
		return wireCase{name: "put " + name, as: as, subject: subjects.Put, header: map[string]string{subjects.HeaderPut: header}, body: string(body), code: code, reason: reason}
	}
	putHeader := func(name string, size int, digest string, overwrite bool) string {
		return fmt.Sprintf(`{"name":%q,"size":%d,"digest":%q,"overwrite":%t}`, name, size, digest, overwrite)
	}
	good := putHeader("put.bin", len(content), ftfstest.Digest(content), false)
	once := put("of put.bin as request put-once", m, good, content, "", "")
	once.header[subjects.HeaderRequestID] = "put-once"
	cases = append(cases,
		wireCase{name: "put without its request", as: m, subject: subjects.Put, body: string(content), code: subjects.CodeInvalid, reason: subjects.ReasonMissingField},
		put("with a request not JSON", m, "not json", content, subjects.CodeInvalid, subjects.ReasonMalformedJSON),
		put("with a request cut short", m, good[:len(good)-1], content, subjects.CodeInvalid, subjects.ReasonMalformedJSON),
		put("with an unknown field", m, `{"bogus":1,`+good[1:], content, subjects.CodeInvalid, subjects.ReasonUnknownField),
		put("without a digest", m, fmt.Sprintf(`{"name":"put.bin","size":%d}`, len(content)), content, subjects.CodeInvalid, subjects.ReasonMissingField),
		put("of size -1", m, putHeader("put.bin", -1, ftfstest.Digest(content), false), content, subjects.CodeInvalid, subjects.ReasonOutOfRange),
		put("larger than MaxPutSize", m, putHeader("put.bin", subjects.MaxPutSize+1, "SHA-256=x", false), ftfstest.RandomBytes(subjects.MaxPutSize+1), subjects.CodeInvalid, subjects.ReasonOutOfRange),
		put("of ../put.bin", m, putHeader("../put.bin", len(content), ftfstest.Digest(content), false), content, subjects.CodeInvalid, subjects.ReasonNameDotSegment),
		put("with a byte more than its size", m, putHeader("put.bin", len(content)-1, ftfstest.Digest(content), false), content, subjects.CodeIntegrity, ""),
		put("with another digest", m, putHeader("put.bin", len(content), ftfstest.Digest(content[1:]), false), content, subjects.CodeIntegrity, ""),
		put("over keep.txt", m, putHeader("keep.txt", len(content), ftfstest.Digest(content), false), content, subjects.CodeConflict, ""),
		wireCase{name: "put without a session", as: m, subject: subjects.Put, session: wireNoSession, header: map[string]string{subjects.HeaderPut: good}, body: string(content), code: subjects.CodeUnauthorized},
		wireCase{name: "put with a forged session", as: m, subject: subjects.Put, session: wireForgedSession, header: map[string]string{subjects.HeaderPut: good}, body: string(content), code: subjects.CodeUnauthorized},
		put("of admin-put.bin", a, putHeader("admin-put.bin", 1, ftfstest.Digest([]byte("x")), false), []byte("x"), "", ""),
		put("over another user's file", m, putHeader("admin-put.bin", len(content), ftfstest.Digest(content), true), content, subjects.CodeForbidden, ""),
		once,
		once, // sent again (its answer lost): the file it stored, not a conflict
		put("of put.bin again", m, good, content, subjects.CodeConflict, ""),
	)
	for _, c := range cases {
		t.Run(c.label(), c.run)
	}

	// What takes set-up or more than one request.
	t.Run("put.bin stored once", func(t *testing.T) {
		if fi := wireStat(t, mallory, "put.bin"); fi.Size != int64(len(content)) || fi.Digest != ftfstest.Digest(content) || fi.Chunks != 1 || fi.Owner != "mallory" {
			t.Errorf("put.bin is %+v; want %d bytes in one chunk, %s", fi, len(content), ftfstest.Digest(content))
		}
		ftfstest.SameBytes(t, content, ftfstest.GetBytes(t, mallory, "put.bin"))
	})
	t.Run("a stale copy of a put after a delete", func(t *testing.T) {
		// A copy of the put that a frozen server held, run after the file was
		// deleted: answered as the first, and the file stays deleted.
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		if err := mallory.Delete(dctx, "put.bin"); err != nil {
			t.Fatal(err)
		}
		once.run(t)
		if _, err := mallory.Stat(dctx, "put.bin"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("put.bin after a stale copy of its put: %v; want ErrNotFound", err)
		}
	})
	t.Run("chunks and commits", func(t *testing.T) { wireChunksAndCommits(t, sys, m, a, mallory) })

	// Carol's transfers all went through, byte for byte.
	close(stop)
	rep := <-carolDone
	t.Run("the bystander's transfers", func(t *testing.T) {
		if rep.err != nil {
			t.Fatalf("carol's transfers, after %d rounds: %v", len(rep.names), rep.err)
		}
		t.Logf("carol made %d uploads and downloads meanwhile", len(rep.names))
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("nothing stored", func(t *testing.T) {
		// Nothing stored by the bad requests: the files, the users, no upload
		// left open; and the damage the good bodies would have done is not done.
		// (put.bin: deleted, and not put back by the copy of its put.)
		want := append([]string{"admin-put.bin", "admins.bin", "chunked.bin", "finished-0.bin", "finished-2.bin", "finished-4.bin", "keep.txt"}, rep.names...)
		slices.Sort(want)
		if got := wireNames(t, mallory); !slices.Equal(got, want) {
			t.Errorf("files %q, want %q", got, want)
		}
		if got := wireStat(t, mallory, "keep.txt"); got.Version != keepInfo.Version || got.Digest != keepInfo.Digest || got.Size != keepInfo.Size || got.Owner != "mallory" || !got.Modified.Equal(keepInfo.Modified) {
			t.Errorf("keep.txt is now %+v, was %+v", got, keepInfo)
		}
		ftfstest.SameBytes(t, keep, ftfstest.GetBytes(t, mallory, "keep.txt"))
		users, err := sys.Login(t, "admin").ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var userNames []string
		for _, u := range users {
			userNames = append(userNames, u.Name)
		}
		slices.Sort(userNames)
		if want := []string{"admin", "carol", "mallory"}; !slices.Equal(userNames, want) {
			t.Errorf("users %q, want %q", userNames, want)
		}
		r := m.ask(t, subjects.Status, wireOwnSession, nil, []byte(`{}`))
		var st subjects.StatusReply
		if r.code != "" || json.Unmarshal(r.data, &st) != nil || st.Bucket.Uploads != 0 || len(st.Streams) == 0 || st.Streams[0].Error != "" {
			t.Errorf("status: %s %s: %d uploads open (streams %+v), want none", r.code, r.text, st.Bucket.Uploads, st.Streams)
		}
	})

	t.Run("every user still served", func(t *testing.T) {
		// Every user is still served: mallory's session survived the bad
		// logouts, carol's password the bad changes.
		if r := m.ask(t, subjects.WhoAmI, wireOwnSession, nil, nil); r.code != "" || !strings.Contains(string(r.data), `"user":"mallory"`) {
			t.Errorf("mallory's whoami: %s %s %s", r.code, r.text, r.data)
		}
		if _, err := carol.WhoAmI(ctx); err != nil {
			t.Errorf("carol's session: %v", err)
		}
		carol2 := sys.Login(t, "carol")
		last := sys.PutRandom(t, carol2, "carol-last.bin", 100_000)
		ftfstest.SameBytes(t, last, ftfstest.GetBytes(t, carol2, "carol-last.bin"))
		if _, err := mallory.Stat(ctx, "keep.txt"); err != nil {
			t.Errorf("mallory's stat: %v", err)
		}
	})
}

// wireChunksAndCommits takes chunks and commits step by step through real
// uploads, m's and admin a's. Every chunk sent after its upload ended is
// refused and not stored.
func wireChunksAndCommits(t *testing.T, sys *ftfstest.System, m, a *wireUser, mallory *client.Client) {
	chunk0, chunk1 := ftfstest.RandomBytes(subjects.ChunkSize), ftfstest.RandomBytes(1000)
	small := ftfstest.RandomBytes(1000)
	up := m.open(t, "chunked.bin", int64(len(chunk0)+len(chunk1)))
	aborted := m.open(t, "aborted.bin", -1)
	wrongSize := m.open(t, "wrong-size.bin", -1)
	wrongDigest := m.open(t, "wrong-digest.bin", int64(len(small)))
	announced := m.open(t, "announced.bin", 2*int64(len(small)))
	admins := a.open(t, "admins.bin", int64(len(small)))
	unknown := subjects.UploadState{Upload: "NOSUCHUPLOAD", Instance: up.Instance}
	commit := func(as *wireUser, st subjects.UploadState, size int, digest string, code subjects.Code) wireCase {
		return wireCase{as: as, subject: subjects.UploadCommit, code: code, name: "upload.commit of " + wireUploadName(st),
			body: fmt.Sprintf(`{"upload":%q,"size":%d,"digest":%q}`, st.Upload, size, digest)}
	}
	uploadReq := func(as *wireUser, subject string, st subjects.UploadState, code subjects.Code) wireCase {
		return wireCase{as: as, subject: subject, code: code, name: wireShort(subject) + " of " + wireUploadName(st),
			body: fmt.Sprintf(`{"upload":%q}`, st.Upload)}
	}
	whole := append(bytes.Clone(chunk0), chunk1...)
	steps := []wireCase{
		m.chunk(up, "1", chunk1, subjects.CodeConflict, nil), // a gap: chunk 0 is missing
		m.chunk(up, "0", chunk0, "", wireAcked(0, int64(len(chunk0)))),
		m.chunk(up, "0", chunk0, "", wireAcked(0, -1)), // again: acknowledged, not stored
		m.chunk(up, "3", chunk1, subjects.CodeConflict, nil),
		m.chunk(up, "1", ftfstest.RandomBytes(subjects.ChunkSize+1), subjects.CodeTooLarge, nil),
		m.chunk(up, "1", chunk1, "", wireAcked(1, int64(len(whole)))),
		m.chunk(up, "1", chunk1, "", wireAcked(1, -1)),
		m.chunk(up, "0", chunk0, "", wireAcked(0, -1)),
		m.chunk(up, "", chunk1, subjects.CodeInvalid, nil),
		m.chunk(up, "one", chunk1, subjects.CodeInvalid, nil),
		m.chunk(up, "-1", chunk1, subjects.CodeInvalid, nil),
		m.chunk(up, "4294967296", chunk1, subjects.CodeInvalid, nil),
		m.chunk(subjects.UploadState{Instance: up.Instance}, "2", chunk1, subjects.CodeInvalid, nil),
		m.chunk(unknown, "0", chunk1, subjects.CodeNotFound, nil),
		{name: "upload.commit of chunked.bin without a digest", as: m, subject: subjects.UploadCommit, body: fmt.Sprintf(`{"upload":%q,"size":%d}`, up.Upload, len(whole)), code: subjects.CodeInvalid, reason: subjects.ReasonMissingField},
		commit(m, up, len(whole), ftfstest.Digest(whole), ""),
		m.chunk(up, "2", chunk1, subjects.CodeNotFound, nil), // finished
		m.chunk(up, "0", chunk0, subjects.CodeNotFound, nil),
		uploadReq(m, subjects.UploadResume, up, subjects.CodeConflict),
		uploadReq(m, subjects.UploadAbort, up, subjects.CodeConflict),

		m.chunk(aborted, "0", small, "", wireAcked(0, int64(len(small)))),
		uploadReq(m, subjects.UploadAbort, aborted, ""),
		m.chunk(aborted, "1", small, subjects.CodeNotFound, nil),
		m.chunk(aborted, "0", small, subjects.CodeNotFound, nil),
		uploadReq(m, subjects.UploadResume, aborted, subjects.CodeNotFound),
		commit(m, aborted, len(small), ftfstest.Digest(small), subjects.CodeNotFound),

		m.chunk(wrongSize, "0", small, "", wireAcked(0, int64(len(small)))),
		commit(m, wrongSize, len(small)-1, ftfstest.Digest(small), subjects.CodeIntegrity),
		uploadReq(m, subjects.UploadResume, wrongSize, subjects.CodeNotFound),
		m.chunk(wrongSize, "1", small, subjects.CodeNotFound, nil),

		m.chunk(wrongDigest, "0", small, "", wireAcked(0, int64(len(small)))),
		commit(m, wrongDigest, len(small), ftfstest.Digest(chunk1), subjects.CodeIntegrity),
		uploadReq(m, subjects.UploadResume, wrongDigest, subjects.CodeNotFound),
		m.chunk(wrongDigest, "1", small, subjects.CodeNotFound, nil),

		m.chunk(announced, "0", small, "", wireAcked(0, int64(len(small)))),
		commit(m, announced, len(small), ftfstest.Digest(small), subjects.CodeIntegrity),
		uploadReq(m, subjects.UploadResume, announced, subjects.CodeNotFound),
		m.chunk(announced, "1", small, subjects.CodeNotFound, nil),

		// Another user's upload: a chunk answering elsewhere than its
		// owner's inbox is dropped unanswered, and the rest is forbidden.
		m.chunk(admins, "0", chunk1, wireNoAnswer, nil),
		uploadReq(m, subjects.UploadResume, admins, subjects.CodeForbidden),
		commit(m, admins, len(chunk1), ftfstest.Digest(chunk1), subjects.CodeForbidden),
		uploadReq(m, subjects.UploadAbort, admins, subjects.CodeForbidden),
		a.chunk(admins, "0", small, "", wireAcked(0, int64(len(small)))),
		commit(a, admins, len(small), ftfstest.Digest(small), ""),
	}
	for _, c := range steps {
		t.Run(c.label(), c.run)
	}
	// A commit or an abort is answered by any server, the holder or not;
	// either way the chunks that follow are refused and not stored. Again
	// and again, so that both ways are taken.
	var finished []subjects.UploadState
	for i := range 6 {
		st := m.open(t, fmt.Sprintf("finished-%d.bin", i), int64(len(small)))
		finished = append(finished, st)
		end := commit(m, st, len(small), ftfstest.Digest(small), "")
		if i%2 == 1 {
			end = uploadReq(m, subjects.UploadAbort, st, "")
		}
		for _, c := range []wireCase{
			m.chunk(st, "0", small, "", wireAcked(0, int64(len(small)))),
			end,
			m.chunk(st, "1", small, subjects.CodeNotFound, nil),
			m.chunk(st, "0", small, subjects.CodeNotFound, nil),
		} {
			t.Run(c.label(), c.run)
		}
	}
	for i, st := range append([]subjects.UploadState{aborted, wrongSize, wrongDigest, announced}, finished...) {
		want := uint64(0) // refused or aborted: purged
		if i >= 4 && i%2 == 0 {
			want = 1 // committed, and nothing after
		}
		if n := wireChunksStored(t, sys, st.Upload); n != want {
			t.Errorf("upload %s: %d chunks in the stream, want %d", st.Upload, n, want)
		}
	}
	if n := wireChunksStored(t, sys, up.Upload); n != 2 {
		t.Errorf("chunked.bin, two chunks sent again and again: %d stored", n)
	}
	fi := wireStat(t, mallory, "chunked.bin")
	if fi.Size != int64(len(whole)) || fi.Digest != ftfstest.Digest(whole) || fi.Chunks != 2 {
		t.Errorf("chunked.bin is %d bytes in %d chunks, %s; want %d bytes in 2, %s", fi.Size, fi.Chunks, fi.Digest, len(whole), ftfstest.Digest(whole))
	}
	ftfstest.SameBytes(t, whole, ftfstest.GetBytes(t, mallory, "chunked.bin"))
}

// wireUser is a user's own NATS connection (a session token, the user's
// inbox prefix) on which requests are written by hand.
type wireUser struct {
	nc    *nats.Conn
	user  string
	token string
}

func dialWire(t *testing.T, sys *ftfstest.System, c *client.Client) *wireUser {
	t.Helper()
	nc, err := sys.Connect(nats.Token(c.Token()), nats.CustomInboxPrefix(subjects.Inbox(c.User())))
	if err != nil {
		t.Fatalf("raw connection as %s: %v", c.User(), err)
	}
	t.Cleanup(nc.Close)
	return &wireUser{nc: nc, user: c.User(), token: c.Token()}
}

// How a request carries its session.
const (
	wireOwnSession = iota
	wireNoSession
	wireForgedSession
)

// wireReply is an answer: an error (code, reason, text) or a body.
type wireReply struct {
	code     subjects.Code
	reason   subjects.Reason
	text     string
	data     []byte
	answered bool
}

// wireNoAnswer is the code of a case the servers must not answer at all.
const wireNoAnswer subjects.Code = "no answer"

// ask sends a request and returns its answer, skipping the keepalives a
// server sends while it works (status 100).
func (w *wireUser) ask(t *testing.T, subject string, session int, header map[string]string, body []byte) wireReply {
	t.Helper()
	return w.askWithin(t, 15*time.Second, subject, session, header, body)
}

func (w *wireUser) askWithin(t *testing.T, wait time.Duration, subject string, session int, header map[string]string, body []byte) wireReply {
	t.Helper()
	m := nats.NewMsg(subjects.For(w.user, subject))
	m.Data = body
	switch session {
	case wireOwnSession:
		m.Header.Set(subjects.HeaderSession, w.token)
	case wireForgedSession:
		m.Header.Set(subjects.HeaderSession, "00000000-0000-0000-0000-000000000000")
	}
	for k, v := range header {
		m.Header.Set(k, v)
	}
	m.Reply = w.nc.NewInbox()
	sub, err := w.nc.SubscribeSync(m.Reply)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := w.nc.PublishMsg(m); err != nil {
		t.Fatalf("publish to %s: %v", subject, err)
	}
	for {
		r, err := sub.NextMsg(wait)
		if err == nats.ErrTimeout {
			return wireReply{}
		}
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		switch r.Header.Get(subjects.HeaderStatus) {
		case "100":
			continue
		case "503":
			t.Fatalf("%s: no responders", subject)
		}
		return wireReply{
			code:     subjects.Code(r.Header.Get(subjects.HeaderErrorCode)),
			reason:   subjects.Reason(r.Header.Get(subjects.HeaderErrorReason)),
			text:     r.Header.Get(subjects.HeaderErrorText),
			data:     r.Data,
			answered: true,
		}
	}
}

// open starts an upload.
func (w *wireUser) open(t *testing.T, name string, size int64) subjects.UploadState {
	t.Helper()
	r := w.ask(t, subjects.UploadOpen, wireOwnSession, nil, fmt.Appendf(nil, `{"name":%q,"size":%d}`, name, size))
	var st subjects.UploadState
	if r.code != "" || json.Unmarshal(r.data, &st) != nil || st.Upload == "" {
		t.Fatalf("open upload of %s: %s %s %s", name, r.code, r.text, r.data)
	}
	wireUploads.Store(st.Upload, name)
	return st
}

// wireUploads is the file name of each upload open returned, by upload ID.
var wireUploads sync.Map

// wireUploadName names st's upload in a case's name: its file's name
// where open returned it, its ID otherwise.
func wireUploadName(st subjects.UploadState) string {
	if name, ok := wireUploads.Load(st.Upload); ok {
		return name.(string)
	}
	if st.Upload == "" {
		return "no upload"
	}
	return "upload " + st.Upload
}

// chunk is a chunk message to the server holding st: index goes in
// HeaderChunk as given ("" for none), the upload in HeaderUpload.
func (w *wireUser) chunk(st subjects.UploadState, index string, data []byte, code subjects.Code, then func(*testing.T, wireReply)) wireCase {
	h := map[string]string{}
	if st.Upload != "" {
		h[subjects.HeaderUpload] = st.Upload
	}
	if index != "" {
		h[subjects.HeaderChunk] = index
	}
	return wireCase{as: w, subject: subjects.Chunk(st.Instance), session: wireNoSession, header: h, body: string(data), code: code, then: then,
		name: fmt.Sprintf("chunk %q of %d bytes to %s", index, len(data), wireUploadName(st))}
}

// acked checks a chunk acknowledgement: its chunk, and the upload's size
// after it unless offset is -1.
func wireAcked(chunk uint32, offset int64) func(*testing.T, wireReply) {
	return func(t *testing.T, r wireReply) {
		t.Helper()
		var ack subjects.ChunkAck
		if err := json.Unmarshal(r.data, &ack); err != nil || ack.Chunk != chunk || offset >= 0 && ack.Offset != offset {
			t.Errorf("ack %s (%v), want chunk %d at offset %d", r.data, err, chunk, offset)
		}
	}
}

// wireCase is one request and the answer it must get.
type wireCase struct {
	name    string // of its subtest, after its user ("" for subject and body)
	as      *wireUser
	subject string
	session int
	header  map[string]string
	body    string
	code    subjects.Code   // "" for success, wireNoAnswer for silence
	reason  subjects.Reason // exactly: "" where the code has none
	then    func(*testing.T, wireReply)
}

// named returns c named name.
func (c wireCase) named(name string) wireCase {
	c.name = name
	return c
}

// label names c's subtest: its user, then its name, or the subject and
// body it sends.
func (c wireCase) label() string {
	name := c.name
	if name == "" {
		body := c.body
		if body == "" {
			body = "(empty)"
		}
		name = wireShort(c.subject) + " " + body
		if c.session != wireOwnSession {
			name += [...]string{"", " without a session", " with a forged session"}[c.session]
		}
	}
	return c.as.user + " " + name
}

// wireShort is a request subject without its prefix: "upload.open".
func wireShort(subject string) string {
	return strings.TrimPrefix(subject, subjects.Prefix+"."+subjects.AnyUser+".")
}

func (c wireCase) run(t *testing.T) {
	t.Helper()
	name := c.label()
	wait := 15 * time.Second
	if c.code == wireNoAnswer {
		wait = time.Second
	}
	r := c.as.askWithin(t, wait, c.subject, c.session, c.header, []byte(c.body))
	switch {
	case c.code == wireNoAnswer:
		if r.answered {
			t.Errorf("%s: answered %q %q %s %s, want no answer", name, r.code, r.reason, r.text, r.data)
		}
	case !r.answered:
		t.Errorf("%s: no answer, want %q %q", name, c.code, c.reason)
	case r.code != c.code || r.reason != c.reason:
		t.Errorf("%s: answered %q %q (%s), want %q %q", name, r.code, r.reason, r.text, c.code, c.reason)
	case c.then != nil:
		c.then(t, r)
	}
}

// wireEndpoint is a request subject with a well-formed body for it.
type wireEndpoint struct {
	subject string
	as      *wireUser
	good    string
	login   bool // needs no session
}

// malformed are the bad variants of e's good body every request subject
// must refuse.
func (e wireEndpoint) malformed() []wireCase {
	bad := func(what, body string, reason subjects.Reason) wireCase {
		return wireCase{name: wireShort(e.subject) + " " + what, as: e.as, subject: e.subject, body: body, code: subjects.CodeInvalid, reason: reason}
	}
	unknown := `{"bogus":true,` + e.good[1:]
	if e.good == "{}" {
		unknown = `{"bogus":true}`
	}
	cases := []wireCase{
		bad("cut short", e.good[:len(e.good)-1], subjects.ReasonMalformedJSON),
		bad("not JSON", "not json", subjects.ReasonMalformedJSON),
		bad("null", "null", subjects.ReasonMalformedJSON),
		bad("in an array", "["+e.good+"]", subjects.ReasonMalformedJSON),
		bad("with an unknown field", unknown, subjects.ReasonUnknownField),
		bad("with a brace after it", e.good+"}", subjects.ReasonTrailingData),
		bad("with an object after it", e.good+" {}", subjects.ReasonTrailingData),
	}
	if e.good != "{}" {
		// A key spelled in capitals is not the key.
		i := strings.IndexByte(e.good, '"')
		j := i + 1 + strings.IndexByte(e.good[i+1:], '"')
		cases = append(cases,
			bad("cut in half", e.good[:len(e.good)/2], subjects.ReasonMalformedJSON),
			bad("with a key in capitals", e.good[:i+1]+strings.ToUpper(e.good[i+1:j])+e.good[j:], subjects.ReasonUnknownField))
	}
	if !e.login {
		cases = append(cases,
			wireCase{name: wireShort(e.subject) + " without a session", as: e.as, subject: e.subject, session: wireNoSession, body: e.good, code: subjects.CodeUnauthorized},
			wireCase{name: wireShort(e.subject) + " with a forged session", as: e.as, subject: e.subject, session: wireForgedSession, body: e.good, code: subjects.CodeUnauthorized})
	}
	return cases
}

// bystanderReport is what the other user's transfers came to.
type bystanderReport struct {
	names []string // files stored and read back intact
	err   error
}

// bystanderTransfers uploads a few MiB and downloads them again, round after
// round, until stop (finishing the round it is in: at least one).
func bystanderTransfers(c *client.Client, stop <-chan struct{}) bystanderReport {
	var rep bystanderReport
	for i := 0; ; i++ {
		name := fmt.Sprintf("carol-%d.bin", i)
		if rep.err = wirePutGet(c, name, 3<<20+i); rep.err != nil {
			return rep
		}
		rep.names = append(rep.names, name)
		select {
		case <-stop:
			return rep
		default:
		}
	}
}

func wirePutGet(c *client.Client, name string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := ftfstest.RandomBytes(n)
	if _, err := c.Put(ctx, name, bytes.NewReader(data), int64(n)); err != nil {
		return err
	}
	var got bytes.Buffer
	if _, err := c.Get(ctx, name, &got); err != nil {
		return err
	}
	if !bytes.Equal(got.Bytes(), data) {
		return fmt.Errorf("%s: read back %d bytes that differ from the %d written", name, got.Len(), n)
	}
	return nil
}

func wireStat(t *testing.T, c *client.Client, name string) client.FileInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fi, err := c.Stat(ctx, name)
	if err != nil {
		t.Fatalf("stat %s: %v", name, err)
	}
	return fi
}

func wireNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	files, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		out = append(out, f.Name)
	}
	slices.Sort(out)
	return out
}

// chunksStored counts the chunk messages of an upload in the files stream.
func wireChunksStored(t *testing.T, sys *ftfstest.System, upload string) uint64 {
	t.Helper()
	js, err := jetstream.New(sys.ServiceConn(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, subjects.ObjectStream(subjects.FilesBucket))
	if err != nil {
		t.Fatal(err)
	}
	subj := subjects.ObjectChunks(subjects.FilesBucket, upload)
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subj]
}

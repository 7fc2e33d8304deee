package subjects

import (
	"strings"
	"testing"
)

func TestRequestSubjectsNameTheirUser(t *testing.T) {
	if got := For("alice", List); got != "ftfs.v1.alice.list" {
		t.Fatalf("For(alice, List) = %q", got)
	}
	if got := For("alice", Chunk("INST")); got != "ftfs.v1.alice.chunk.INST" {
		t.Fatalf("For(alice, Chunk) = %q", got)
	}
	if got := For("alice", ServerGone); got != ServerGone {
		t.Fatalf("For left a subject outside Prefix changed: %q", got)
	}
	for subject, want := range map[string]string{
		"ftfs.v1.alice.list":        "alice",
		"ftfs.v1.bob.upload.commit": "bob",
		List:                        "", // the servers' wildcard names nobody
		"ftfs.v1.alice":             "",
		"ftfs.v2.alice.list":        "",
		"$SRV.PING.ftfs":            "",
	} {
		if got := UserOf(subject); got != want {
			t.Errorf("UserOf(%q) = %q, want %q", subject, got, want)
		}
	}
}

func TestOnlyTheAskersInboxIsAnswered(t *testing.T) {
	list := For("alice", List)
	for reply, want := range map[string]bool{
		"_FTFS_INBOX.alice.abc.1":     true,
		"_FTFS_INBOX.alice":           false,
		"_FTFS_INBOX.alicex.abc":      false, // another user whose name starts alike
		"_FTFS_INBOX.bob.abc":         false,
		"_FTFS_INBOX.alice.*":         false,
		"_FTFS_INBOX.alice.>":         false,
		"_INBOX.abc":                  false,
		"$JS.API.STREAM.DELETE.OBJ_x": false,
		"$KV.ftfs-users.admin":        false,
		"":                            false,
		"_FTFS_INBOX.alice.a b":       false,
		"_FTFS_INBOX.alice..x":        false,
	} {
		if got := OwnInbox(list, reply); got != want {
			t.Errorf("OwnInbox(%q, %q) = %v, want %v", list, reply, got, want)
		}
	}
	if OwnInbox(List, "_FTFS_INBOX.alice.x") {
		t.Error("a subject naming no user answers into an inbox")
	}
}

func TestUploadConnectionNames(t *testing.T) {
	name := UploadConnUser("alice", "UPL0AD", 1234)
	owner, id, limit, ok := ParseUploadConnUser(name)
	if !ok || owner != "alice" || id != "UPL0AD" || limit != 1234 {
		t.Fatalf("ParseUploadConnUser(%q) = %q %q %d %v", name, owner, id, limit, ok)
	}
	for _, bad := range []string{"alice", "upload..12.alice", "upload.U.-1.alice", "upload.U.x.alice", "upload.U.12.", "uploads.U.12.alice"} {
		if _, _, _, ok := ParseUploadConnUser(bad); ok {
			t.Errorf("ParseUploadConnUser(%q) accepted", bad)
		}
	}
	// Room for a resume's resends, and not much more.
	size := int64(10 << 20)
	if l := UploadConnLimit(size); l < size+2*UploadWindow*ChunkSize || l > 2*size+32*ChunkSize {
		t.Errorf("UploadConnLimit(%d) = %d", size, l)
	}
}

// The users' and uploads' accounts reach storage only through imports
// below the reserved reply prefix, which no client may name as a reply.
func TestImportsAreBelowTheReservedReplyPrefix(t *testing.T) {
	for _, s := range []string{DownloadImport, UploadChunks("U"), UploadChunksAll} {
		if !strings.HasPrefix(s, "_R_.") {
			t.Errorf("%s is not below _R_.", s)
		}
	}
	for _, s := range FrontPublish() {
		if strings.HasPrefix(s, "$JS") || strings.HasPrefix(s, "$KV") || strings.HasPrefix(s, "$O") || s == ">" {
			t.Errorf("a front connection may publish to %s", s)
		}
	}
}

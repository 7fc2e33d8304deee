package subjects

import (
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"
)

// The JSON names are the wire contract: renaming a Go field must not change
// them.
func TestMessagesKeepTheirWireNames(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{LoginRequest{User: "a", Password: "p"}, `{"user":"a","password":"p"}`},
		{UploadOpenRequest{Name: "n", Size: -1}, `{"name":"n","size":-1}`},
		{UploadState{Upload: "u", Instance: "i", NextChunk: 2, Offset: 3, ChunkSize: 4, Window: 5}, `{"upload":"u","instance":"i","next_chunk":2,"offset":3,"chunk_size":4,"window":5}`},
		{ChunkAck{Chunk: 1, Offset: 2}, `{"chunk":1,"offset":2}`},
		{UploadCommitRequest{Upload: "u", Size: 1, Digest: "d"}, `{"upload":"u","size":1,"digest":"d"}`},
		{DownloadRequest{Name: "n", Version: "v", After: 7, Max: 16}, `{"name":"n","version":"v","after":7,"max":16}`},
		{RenameRequest{From: "a", To: "b"}, `{"from":"a","to":"b"}`},
		{ListRequest{Prefix: "p", After: "a", Limit: 3}, `{"prefix":"p","after":"a","limit":3}`},
		{FileInfo{Name: "n", Size: 1, Modified: time.Unix(0, 0).UTC(), Owner: "o", Digest: "d", Version: "v", Chunks: 1},
			`{"name":"n","size":1,"modified":"1970-01-01T00:00:00Z","owner":"o","digest":"d","version":"v","chunks":1}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.v)
		if err != nil || string(b) != c.want {
			t.Errorf("%T: %s, want %s (%v)", c.v, b, c.want, err)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	seen := map[Code]bool{}
	for _, c := range []Code{CodeInvalid, CodeUnauthorized, CodeForbidden, CodeNotFound, CodeConflict, CodeTooLarge, CodeIntegrity, CodeReadOnly, CodeBusy, CodeInternal, CodeUnavailable} {
		if seen[c] {
			t.Errorf("code %s used twice", c)
		}
		seen[c] = true
	}
	if !CodeUnavailable.Retryable() || !CodeBusy.Retryable() || CodeNotFound.Retryable() || CodeIntegrity.Retryable() {
		t.Error("retryable codes are unavailable and busy only")
	}
	if CodeOf(Errorf(CodeConflict, "x")) != CodeConflict || CodeOf(json.Unmarshal([]byte("{"), new(any))) != CodeInternal {
		t.Error("CodeOf")
	}
}

func TestIssuerKeyIsDerivedFromTheServicePassword(t *testing.T) {
	a, err := IssuerKey("secret-one")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := IssuerKey("secret-one")
	c, _ := IssuerKey("secret-two")
	pa, _ := a.PublicKey()
	pb, _ := b.PublicKey()
	pc, _ := c.PublicKey()
	if pa != pb || pa == pc || pa[0] != 'A' {
		t.Fatalf("keys %s %s %s", pa, pb, pc)
	}
	if _, err := IssuerKey(""); err == nil {
		t.Fatal("empty password accepted")
	}
}

// TestDigest: a digest reads as the JetStream object store writes it, so
// that ftfs's digests and the store's compare equal.
func TestDigest(t *testing.T) {
	empty := sha256.Sum256(nil)
	if got, want := Digest(empty[:]), "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="; got != want {
		t.Fatalf("Digest(sha256 of nothing) = %q, want %q", got, want)
	}
}

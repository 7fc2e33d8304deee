package ftfstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
)

// WriteFiles writes files (path, slash-separated -> content) below dir,
// making the directories they need: a local tree to put with put -r.
func WriteFiles(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// RandomBytes returns n random bytes.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Digest is the object store's digest string of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return subjects.Digest(sum[:])
}

// PutRandom uploads n random bytes as name and returns them.
func (sys *System) PutRandom(t testing.TB, c *client.Client, name string, n int) []byte {
	t.Helper()
	data := RandomBytes(n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fi, err := c.Put(ctx, name, bytes.NewReader(data), int64(n))
	if err != nil {
		t.Fatalf("put %s (%d bytes): %v", name, n, err)
	}
	if fi.Size != int64(n) || fi.Digest != Digest(data) {
		t.Fatalf("put %s: server reports %d bytes %s, want %d %s", name, fi.Size, fi.Digest, n, Digest(data))
	}
	return data
}

// GetBytes downloads name.
func GetBytes(t testing.TB, c *client.Client, name string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var buf bytes.Buffer
	if _, err := c.Get(ctx, name, &buf); err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return buf.Bytes()
}

// SameBytes fails the test unless got equals want, comparing digests so
// that the failure stays readable.
func SameBytes(t testing.TB, want, got []byte) {
	t.Helper()
	if !bytes.Equal(want, got) {
		ws, gs := sha256.Sum256(want), sha256.Sum256(got)
		t.Fatalf("bytes differ: want %d bytes sha256 %s, got %d bytes sha256 %s", len(want), hex.EncodeToString(ws[:8]), len(got), hex.EncodeToString(gs[:8]))
	}
}

// Stream is a reader of n pseudo-random bytes generated on the fly, with
// its digest once read: large transfers without holding them in memory.
type Stream struct {
	n, read int64
	h       interface{ Sum([]byte) []byte }
	w       io.Writer
	block   []byte
}

// NewStream returns a reader of n bytes.
func NewStream(n int64) *Stream {
	h := sha256.New()
	return &Stream{n: n, h: h, w: h, block: RandomBytes(1 << 20)}
}

func (s *Stream) Read(p []byte) (int, error) {
	if s.read >= s.n {
		return 0, io.EOF
	}
	want := min(int64(len(p)), s.n-s.read)
	off := s.read % int64(len(s.block))
	n := copy(p[:want], s.block[off:])
	// Vary the content per block so chunks differ.
	if off == 0 && n > 8 {
		p[0] ^= byte(s.read >> 20)
		p[1] ^= byte(s.read >> 28)
	}
	s.w.Write(p[:n])
	s.read += int64(n)
	return n, nil
}

// Digest is the digest of the bytes read so far.
func (s *Stream) Digest() string {
	return subjects.Digest(s.h.Sum(nil))
}

// Digester is a writer that keeps only the object store's digest string
// of what it was given: large downloads checked without holding them.
type Digester struct{ h hash.Hash }

// NewDigester returns an empty Digester.
func NewDigester() *Digester { return &Digester{h: sha256.New()} }

func (d *Digester) Write(p []byte) (int, error) { return d.h.Write(p) }

// Digest is the digest of the bytes written so far.
func (d *Digester) Digest() string {
	return subjects.Digest(d.h.Sum(nil))
}

// Midway is a writer that applies a fault once more than At bytes have
// reached it, before it takes more. Progress callbacks are throttled and a
// fast download can finish between two of them; a download written to a
// Midway cannot finish before its fault has hit.
type Midway struct {
	W     io.Writer
	At    int64
	Fault func()
	n     int64
	hit   bool
}

func (m *Midway) Write(p []byte) (int, error) {
	m.n += int64(len(p))
	if !m.hit && m.n > m.At {
		m.hit = true
		m.Fault()
	}
	return m.W.Write(p)
}

// Hit reports whether the fault was applied.
func (m *Midway) Hit() bool { return m.hit }

package client

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
	"testing/iotest"
)

// TestChunkReader: content comes in chunks of the chunk size, the last
// one shorter, hashed and counted; a buffer given back is read into
// again; a reader giving more than its limit is an integrity error.
func TestChunkReader(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 5) // 50 bytes
	for _, limit := range []int64{-1, 50} {
		c := newChunkReader(iotest.OneByteReader(bytes.NewReader(data)), 16, limit)
		var got [][]byte
		for !c.eof {
			chunk, err := c.next()
			if err != nil {
				t.Fatalf("limit %d: %v", limit, err)
			}
			if chunk != nil {
				got = append(got, bytes.Clone(chunk))
				c.reuse(chunk)
			}
		}
		sum := sha256.Sum256(data)
		if len(got) != 4 || len(got[3]) != 2 || !bytes.Equal(bytes.Join(got, nil), data) || c.read != 50 || !bytes.Equal(c.hash.Sum(nil), sum[:]) {
			t.Fatalf("limit %d: chunks of %v bytes, read %d", limit, lens(got), c.read)
		}
		if len(c.free) != 1 {
			t.Fatalf("limit %d: %d spare buffers, want the one reused", limit, len(c.free))
		}
	}

	// A reader ending on a chunk's end gives no empty chunk.
	c := newChunkReader(bytes.NewReader(data[:32]), 16, -1)
	for range 2 {
		if chunk, err := c.next(); len(chunk) != 16 || err != nil {
			t.Fatalf("full chunk: %d bytes, %v", len(chunk), err)
		}
	}
	if chunk, err := c.next(); chunk != nil || err != nil || !c.eof {
		t.Fatalf("after the end: %d bytes, %v, eof %v", len(chunk), err, c.eof)
	}

	c = newChunkReader(bytes.NewReader(data), 16, 40)
	var err error
	for err == nil && !c.eof {
		_, err = c.next()
	}
	if !errors.Is(err, ErrIntegrity) || !errors.Is(err, errReaderTooBig) || c.read != 32 {
		t.Fatalf("a reader over its limit: %v, read %d", err, c.read)
	}
}

func lens(chunks [][]byte) []int {
	n := make([]int, len(chunks))
	for i, c := range chunks {
		n[i] = len(c)
	}
	return n
}
